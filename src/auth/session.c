/*
 * session.c - logins, sessions and the principals behind them (session.h).
 *
 * A login is checked against the directory (Argon2id password, lockout
 * counted in Redis, a TOTP second factor as RFC 6238 makes it); a session is
 * a Redis hash named by the BLAKE2b hash of its token. A principal is built
 * from the directory (roles, own subtree, contracts) and cached in Redis as
 * JSON; the cache is trusted for SESSION_PROFILE_CHECK_S seconds, then
 * checked against the user's profile_version, and dropped wholesale when
 * the generation counter moves (session_invalidate(0)). The same principals
 * answer DICOM user identity negotiation (PS3.7 D.3.3.7) and associations
 * from a known AE title.
 *
 * Several Redis steps that must happen together (counting a failure and
 * locking, opening or renewing a session, burning a TOTP step) run as one
 * Lua script, so a crash between two commands never leaves a key without
 * its expiry. Any Redis failure is CP_ERR_UNAVAILABLE: never an allow.
 */
#include "auth/session.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "auth/credential.h"
#include "core/alloc.h"
#include "core/limits.h"

#define SESSION_PREFIX "cps_"
#define TOKEN_PREFIX   "cpat_"
#define US_PER_S       INT64_C(1000000)

/* Room for a key: the kv's prefix, a short name and a 64-character hash. */
#define KEY_CAP        KV_KEY_MAX

/* A session resolved a moment ago in this process. */
typedef struct local_slot {
    char hash[65];
    principal *p;                       /* NULL: empty */
    bool enrol;
    int64_t fetched_us;                 /* on the service's clock */
    int64_t fetched_mono_us;            /* on the monotonic clock */
} local_slot;

struct session_service {
    directory *dir;
    kv *kv;
    unsigned idle_s;
    unsigned absolute_s;
    unsigned lock_after;
    unsigned lock_window_s;
    unsigned lock_s;
    bool mfa_admins;
    bool mfa_doctors;
    bool has_service;
    char service_hash[65];
    char *issuer;
    int64_t (*now_us)(void);
    /*
     * Sessions resolved in the last SESSION_LOCAL_MS, so that a viewer's
     * burst of requests costs Redis one round trip, not one per request.
     */
    unsigned local_ms;
    pthread_mutex_t local_lock;
    local_slot local[SESSION_LOCAL_SLOTS];
};

/* --- Lua scripts ----------------------------------------------------------- */

/*
 * A failed login: KEYS fail, lock; ARGV window, lock_after, lock_s. The
 * count expires with its window; reaching the limit locks the name and
 * starts a fresh count for after the lock.
 */
static const char script_fail[] =
    "local n = redis.call('INCR', KEYS[1])\n"
    "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
    "if n >= tonumber(ARGV[2]) then\n"
    "  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return n\n";

/*
 * A new session: KEYS sess, usess; ARGV uid, created, abs, peer, enrol,
 * idle_s, hash, usess_ttl.
 */
static const char script_open[] =
    "redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'created', ARGV[2], 'abs', ARGV[3],\n"
    "  'peer', ARGV[4], 'enrol', ARGV[5], 'seen', ARGV[2])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[6])\n"
    "redis.call('SADD', KEYS[2], ARGV[7])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[8])\n"
    "return 1\n";

/*
 * Using a session: KEYS sess; ARGV now_us, idle_s, idle_us. Returns
 * {uid, enrol} or nil when unknown or past either expiry (then dropped).
 * The idle time is checked on the caller's clock too, not only by the
 * key's EXPIRE, so that a test clock sees it.
 */
static const char script_use[] =
    "local f = redis.call('HMGET', KEYS[1], 'uid', 'abs', 'enrol', 'seen')\n"
    "if not f[1] then return false end\n"
    "local now = tonumber(ARGV[1])\n"
    "local abs = tonumber(f[2])\n"
    "local seen = tonumber(f[4]) or now\n"
    "if abs == nil or abs <= now or now - seen > tonumber(ARGV[3]) then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  return false\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'seen', ARGV[1])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "return {f[1], f[3] or '0'}\n";

/* A TOTP step: KEYS totp; ARGV step, ttl. 1 when not used before. */
static const char script_step[] =
    "local last = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1\n"
    "if last >= tonumber(ARGV[1]) then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
    "return 1\n";

/* Enrolment done: KEYS sess; ARGV uid. Touches only that user's session. */
static const char script_enrolled[] =
    "if redis.call('HGET', KEYS[1], 'uid') == ARGV[1] then\n"
    "  redis.call('HSET', KEYS[1], 'enrol', '0')\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* --- small helpers ------------------------------------------------------- */

static int64_t real_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

static int64_t now_us(const session_service *s)
{
    return s->now_us != NULL ? s->now_us() : real_now_us();
}

/* Every failure of Redis is the same to a caller: the service is away. */
static cp_status redis_failed(cp_status st, const cp_error *kerr, cp_error *err)
{
    if (st == CP_ERR_NOMEM)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory talking to redis");
    return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "redis: %s", kerr->detail[0] != '\0' ? kerr->detail
                                                             : cp_status_summary(st));
}

static cp_status run(session_service *s, size_t argc, const char *const *argv,
                     kv_reply **reply, cp_error *err)
{
    cp_error kerr;
    cp_status st;

    cp_error_clear(&kerr);
    st = kv_command(s->kv, argc, argv, NULL, reply, &kerr);
    if (st != CP_OK)
        return redis_failed(st, &kerr, err);
    return CP_OK;
}

static cp_status run_script(session_service *s, const char *script, size_t nkeys,
                            const char *const *keys, size_t nargs, const char *const *args,
                            kv_reply **reply, cp_error *err)
{
    cp_error kerr;
    cp_status st;

    cp_error_clear(&kerr);
    st = kv_eval(s->kv, script, nkeys, keys, nargs, args, reply, &kerr);
    if (st != CP_OK)
        return redis_failed(st, &kerr, err);
    return CP_OK;
}

static cp_status make_key(session_service *s, char *out, const char *a, const char *b,
                          cp_error *err)
{
    if (kv_key(s->kv, out, KEY_CAP, a, b) != CP_OK)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis key %s too long", a);
    return CP_OK;
}

static cp_status make_id_key(session_service *s, char *out, const char *a, int64_t id,
                             cp_error *err)
{
    char num[24];

    snprintf(num, sizeof num, "%" PRId64, id);
    return make_key(s, out, a, num, err);
}

/* Refusals restate what the directory said (NOT_FOUND and the like). */
static cp_status unauthenticated(cp_error *err, const char *why)
{
    cp_error_clear(err);
    return cp_error_set(err, CP_ERR_UNAUTHENTICATED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "%s", why);
}

/*
 * The name lockouts are counted under: lower case, and only the characters
 * a username may have, so that any text a client sends maps to a sane key.
 */
static bool name_key(const char *username, char out[DIRECTORY_USERNAME_MAX + 1])
{
    size_t i, len;

    if (username == NULL)
        return false;
    len = strnlen(username, DIRECTORY_USERNAME_MAX + 1);
    if (len == 0 || len > DIRECTORY_USERNAME_MAX)
        return false;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)username[i];

        if (!isalnum(c) && c != '.' && c != '_' && c != '@' && c != '-')
            return false;
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    return true;
}

static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t len = src != NULL ? strnlen(src, cap - 1) : 0;

    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Today as YYYYMMDD in the server's time zone, which contracts are written in. */
static void today(const session_service *s, char out[9])
{
    time_t t = (time_t)(now_us(s) / US_PER_S);
    struct tm tm;

    if (localtime_r(&t, &tm) == NULL || strftime(out, 9, "%Y%m%d", &tm) != 8)
        copy_text(out, 9, "00000000");
}

/* --- building principals from the directory --------------------------------- */

typedef struct grant_list {
    principal_grant *items;
    size_t count;
    size_t cap;
} grant_list;

static cp_status grants_add_subtree(session_service *s, grant_list *gl, int64_t root,
                                    const char *modalities, cp_error *err)
{
    int64_t *ids = NULL;
    size_t n = 0, i;
    cp_status st;

    if (strlen(modalities) >= sizeof gl->items[0].modalities)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "modality list too long");
    st = directory_institution_subtree(s->dir, root, &ids, &n, err);
    if (st != CP_OK)
        return st;

    for (i = 0; i < n; i++) {
        st = cp_array_grow(&gl->items, &gl->cap, gl->count, sizeof *gl->items, 16,
                           SESSION_GRANTS_MAX);
        if (st != CP_OK) {
            cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                         "more than %d institutions granted", SESSION_GRANTS_MAX);
            goto done;
        }
        gl->items[gl->count].institution_id = ids[i];
        copy_text(gl->items[gl->count].modalities, sizeof gl->items[0].modalities,
                  modalities);
        gl->count++;
    }

done:
    cp_free(ids);
    return st;
}

typedef struct contract_list {
    directory_contract *items;
    size_t count;
    size_t cap;
} contract_list;

static cp_status collect_contract(void *ctx, const directory_contract *c)
{
    contract_list *cl = ctx;
    cp_status st;

    st = cp_array_grow(&cl->items, &cl->cap, cl->count, sizeof *cl->items, 8,
                       SESSION_CONTRACTS_MAX);
    if (st != CP_OK)
        return st;
    cl->items[cl->count++] = *c;
    return CP_OK;
}

static bool contract_active(const directory_contract *c, const char *day)
{
    if (c->revoked)
        return false;
    if (c->start_date[0] != '\0' && strcmp(c->start_date, day) > 0)
        return false;
    if (c->end_date[0] != '\0' && strcmp(day, c->end_date) > 0)
        return false;
    return true;
}

/*
 * Grants opened by a doctor's active contracts: the requesting institution's
 * subtree, limited to the contract's modalities.
 */
static cp_status grants_add_contracts(session_service *s, grant_list *gl, int64_t user_id,
                                      cp_error *err)
{
    contract_list cl = { 0 };
    char day[9];
    size_t i;
    cp_status st;

    st = directory_contract_list(s->dir, user_id, 0, collect_contract, &cl, err);
    if (st != CP_OK) {
        cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "listing contracts");
        goto done;
    }

    today(s, day);
    for (i = 0; i < cl.count; i++) {
        directory_institution inst;

        if (!contract_active(&cl.items[i], day))
            continue;

        /* A disabled hospital sends nothing to read, and shows nothing. */
        st = directory_institution_get(s->dir, cl.items[i].requesting_id, &inst, err);
        if (st == CP_ERR_NOT_FOUND) {
            cp_error_clear(err);
            st = CP_OK;
            continue;
        }
        if (st != CP_OK)
            goto done;
        if (inst.disabled)
            continue;
        st = grants_add_subtree(s, gl, cl.items[i].requesting_id, cl.items[i].modalities,
                                err);
        if (st != CP_OK)
            goto done;
    }

done:
    cp_free(cl.items);
    return st;
}

static cp_status institution_enabled(session_service *s, int64_t id, cp_error *err)
{
    directory_institution inst;
    cp_status st;

    st = directory_institution_get(s->dir, id, &inst, err);
    if (st == CP_ERR_NOT_FOUND)
        return unauthenticated(err, "institution unknown");
    if (st != CP_OK)
        return st;
    if (inst.disabled)
        return unauthenticated(err, "institution disabled");
    return CP_OK;
}

static principal *principal_new(void)
{
    return cp_calloc(1, sizeof(principal));
}

static cp_status build_user(session_service *s, int64_t user_id, principal **out,
                            cp_error *err)
{
    directory_user u;
    grant_list gl = { 0 };
    principal *p = NULL;
    size_t own = 0;
    cp_status st;

    *out = NULL;
    st = directory_user_get(s->dir, user_id, &u, err);
    if (st == CP_ERR_NOT_FOUND)
        return unauthenticated(err, "user unknown");
    if (st != CP_OK)
        return st;
    if (u.disabled)
        return unauthenticated(err, "user disabled");
    st = institution_enabled(s, u.institution_id, err);
    if (st != CP_OK)
        return st;

    if (u.roles & (ROLE_TECHNICIAN | ROLE_INSTITUTION_ADMIN)) {
        st = grants_add_subtree(s, &gl, u.institution_id, "", err);
        if (st != CP_OK)
            goto fail;
        own = gl.count;
    }
    if (u.roles & (ROLE_RADIOLOGIST | ROLE_REVIEWER)) {
        st = grants_add_contracts(s, &gl, u.id, err);
        if (st != CP_OK)
            goto fail;
    }

    p = principal_new();
    if (p == NULL) {
        st = CP_ERR_NOMEM;
        goto fail;
    }
    p->kind = PRINCIPAL_USER;
    p->id = u.id;
    copy_text(p->name, sizeof p->name, u.username);
    p->institution_id = u.institution_id;
    p->roles = u.roles & ROLE_ALL;
    p->title = u.title;
    p->may_self_approve = u.may_self_approve;
    p->profile_version = u.profile_version;
    p->grants = gl.items;
    p->grant_count = gl.count;
    p->own_grant_count = own;
    *out = p;
    return CP_OK;

fail:
    cp_free(gl.items);
    return st;
}

/* A device's principal: its institution's subtree, with the given roles. */
static cp_status build_device(session_service *s, principal_kind kind, int64_t id,
                              const char *name, int64_t institution_id, unsigned roles,
                              principal **out, cp_error *err)
{
    grant_list gl = { 0 };
    principal *p;
    cp_status st;

    *out = NULL;
    st = institution_enabled(s, institution_id, err);
    if (st != CP_OK)
        return st;
    st = grants_add_subtree(s, &gl, institution_id, "", err);
    if (st != CP_OK)
        goto fail;

    p = principal_new();
    if (p == NULL) {
        st = CP_ERR_NOMEM;
        goto fail;
    }
    p->kind = kind;
    p->id = id;
    copy_text(p->name, sizeof p->name, name);
    p->institution_id = institution_id;
    p->roles = roles & ROLE_ALL & ~ROLE_SEPARATED;
    p->grants = gl.items;
    p->grant_count = gl.count;
    p->own_grant_count = gl.count;
    *out = p;
    return CP_OK;

fail:
    cp_free(gl.items);
    return st;
}

/* --- the cached form ---------------------------------------------------------- */

/* What a cache entry carries beside the principal: when and under what it was built. */
typedef struct cache_stamp {
    int64_t generation;
    int64_t checked_us;
    char day[9];
} cache_stamp;

static cp_status principal_to_json(const principal *p, const cache_stamp *stamp,
                                   char **out, size_t *len)
{
    json_t *root = NULL, *grants = NULL;
    char *text = NULL;
    size_t i, need;
    cp_status st = CP_ERR_NOMEM;

    *out = NULL;
    grants = json_array();
    if (grants == NULL)
        goto done;
    for (i = 0; i < p->grant_count; i++) {
        json_t *g = json_pack("[I,s]", (json_int_t)p->grants[i].institution_id,
                              p->grants[i].modalities);

        if (g == NULL || json_array_append_new(grants, g) != 0)
            goto done;
    }

    root = json_pack("{s:i,s:I,s:s,s:I,s:I,s:i,s:b,s:I,s:I,s:I,s:s,s:I,s:O}",
                     "kind", (int)p->kind, "id", (json_int_t)p->id, "name", p->name,
                     "inst", (json_int_t)p->institution_id, "roles", (json_int_t)p->roles,
                     "title", p->title, "self", (int)p->may_self_approve,
                     "pv", (json_int_t)p->profile_version,
                     "gen", (json_int_t)stamp->generation,
                     "checked", (json_int_t)stamp->checked_us, "day", stamp->day,
                     "own", (json_int_t)p->own_grant_count, "grants", grants);
    if (root == NULL)
        goto done;

    need = json_dumpb(root, NULL, 0, JSON_COMPACT);
    if (need == 0 || need > SESSION_PROFILE_JSON_MAX) {
        st = CP_ERR_LIMIT;
        goto done;
    }
    text = cp_malloc(need + 1);
    if (text == NULL)
        goto done;
    if (json_dumpb(root, text, need, JSON_COMPACT) != need) {
        cp_free(text);
        goto done;
    }
    text[need] = '\0';
    *out = text;
    *len = need;
    st = CP_OK;

done:
    json_decref(root);
    json_decref(grants);
    return st;
}

/* A principal from its cached JSON; NULL when the entry is damaged or foreign. */
static principal *principal_from_json(const char *text, size_t len, cache_stamp *stamp)
{
    json_t *root, *grants = NULL;
    json_int_t id, inst, roles, pv, gen, checked, own;
    int kind, title, self;
    const char *name, *day;
    principal *p = NULL;
    size_t i, n;

    root = json_loadb(text, len, 0, NULL);
    if (root == NULL)
        return NULL;
    if (json_unpack(root, "{s:i,s:I,s:s,s:I,s:I,s:i,s:b,s:I,s:I,s:I,s:s,s:I,s:o}",
                    "kind", &kind, "id", &id, "name", &name, "inst", &inst,
                    "roles", &roles, "title", &title, "self", &self, "pv", &pv,
                    "gen", &gen, "checked", &checked, "day", &day, "own", &own,
                    "grants", &grants) != 0)
        goto fail;
    n = json_array_size(grants);
    if (!json_is_array(grants) || n > SESSION_GRANTS_MAX || own < 0 || (size_t)own > n ||
        kind < PRINCIPAL_USER || kind > PRINCIPAL_SERVICE || roles < 0 ||
        strlen(name) >= sizeof p->name || strlen(day) >= sizeof stamp->day)
        goto fail;

    p = principal_new();
    if (p == NULL)
        goto fail;
    if (n > 0) {
        p->grants = cp_calloc(n, sizeof *p->grants);
        if (p->grants == NULL)
            goto fail;
    }
    for (i = 0; i < n; i++) {
        json_int_t gid;
        const char *mods;

        if (json_unpack(json_array_get(grants, i), "[I,s]", &gid, &mods) != 0 ||
            strlen(mods) >= sizeof p->grants[i].modalities)
            goto fail;
        p->grants[i].institution_id = gid;
        copy_text(p->grants[i].modalities, sizeof p->grants[i].modalities, mods);
    }
    p->grant_count = n;
    p->own_grant_count = (size_t)own;
    p->kind = (principal_kind)kind;
    p->id = id;
    copy_text(p->name, sizeof p->name, name);
    p->institution_id = inst;
    p->roles = (unsigned)roles & ROLE_ALL;
    p->title = title;
    p->may_self_approve = self != 0;
    p->profile_version = pv;
    stamp->generation = gen;
    stamp->checked_us = checked;
    copy_text(stamp->day, sizeof stamp->day, day);
    json_decref(root);
    return p;

fail:
    principal_free(p);
    json_decref(root);
    return NULL;
}

static cp_status cache_put(session_service *s, const char *key, const principal *p,
                           const cache_stamp *stamp, unsigned ttl_s, cp_error *err)
{
    char *text = NULL;
    size_t len = 0;
    char ttl[16];
    const char *argv[5];
    size_t argl[5];
    cp_error kerr;
    cp_status st;

    st = principal_to_json(p, stamp, &text, &len);
    if (st != CP_OK)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "principal not cacheable");
    snprintf(ttl, sizeof ttl, "%u", ttl_s);
    argv[0] = "SET";
    argv[1] = key;
    argv[2] = text;
    argv[3] = "EX";
    argv[4] = ttl;
    argl[0] = 3;
    argl[1] = strlen(key);
    argl[2] = len;
    argl[3] = 2;
    argl[4] = strlen(ttl);

    cp_error_clear(&kerr);
    st = kv_command(s->kv, 5, argv, argl, NULL, &kerr);
    cp_free(text);
    if (st != CP_OK)
        return redis_failed(st, &kerr, err);
    return CP_OK;
}

/*
 * The cached entry at key and the generation now, in one round trip.
 * *cached is NULL when there is no usable entry.
 */
static cp_status cache_get(session_service *s, const char *key, principal **cached,
                           cache_stamp *stamp, int64_t *generation, cp_error *err)
{
    char gen_key[KEY_CAP];
    const char *argv[3];
    kv_reply *r = NULL;
    cp_status st;

    *cached = NULL;
    *generation = 0;
    st = make_key(s, gen_key, "profgen", NULL, err);
    if (st != CP_OK)
        return st;
    argv[0] = "MGET";
    argv[1] = key;
    argv[2] = gen_key;
    st = run(s, 3, argv, &r, err);
    if (st != CP_OK)
        return st;

    if (r->type != KV_REPLY_ARRAY || r->count != 2) {
        st = cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "redis: unexpected MGET reply");
        goto done;
    }
    if (r->elements[1]->type == KV_REPLY_STRING)
        *generation = strtoll(r->elements[1]->str, NULL, 10);
    if (r->elements[0]->type == KV_REPLY_STRING)
        *cached = principal_from_json(r->elements[0]->str, r->elements[0]->len, stamp);

done:
    kv_reply_free(r);
    return st;
}

/*
 * A user's principal: from the cache while it is fresh, checked against the
 * directory's profile_version once the check period has passed, rebuilt
 * when stale, invalidated, of another generation or of another day (a
 * contract may have started or ended).
 */
static cp_status user_principal(session_service *s, int64_t user_id, principal **out,
                                cp_error *err)
{
    char key[KEY_CAP];
    principal *p = NULL;
    cache_stamp stamp = { 0 };
    int64_t gen, now = now_us(s), version;
    char day[9];
    cp_status st;

    *out = NULL;
    st = make_id_key(s, key, "prof", user_id, err);
    if (st != CP_OK)
        return st;
    st = cache_get(s, key, &p, &stamp, &gen, err);
    if (st != CP_OK)
        return st;
    today(s, day);

    if (p != NULL && (stamp.generation != gen || strcmp(stamp.day, day) != 0 ||
                      p->kind != PRINCIPAL_USER || p->id != user_id)) {
        principal_free(p);
        p = NULL;
    }
    if (p != NULL && now - stamp.checked_us >= 0 &&
        now - stamp.checked_us < SESSION_PROFILE_CHECK_S * US_PER_S) {
        *out = p;
        return CP_OK;
    }

    if (p != NULL) {
        st = directory_user_profile_version(s->dir, user_id, &version, err);
        if (st == CP_ERR_NOT_FOUND)
            st = unauthenticated(err, "user unknown");
        if (st != CP_OK)
            goto fail;
        if (version != p->profile_version) {
            principal_free(p);
            p = NULL;
        }
    }
    if (p == NULL) {
        st = build_user(s, user_id, &p, err);
        if (st != CP_OK)
            goto fail;
    }

    stamp.generation = gen;
    stamp.checked_us = now;
    copy_text(stamp.day, sizeof stamp.day, day);
    st = cache_put(s, key, p, &stamp, SESSION_PROFILE_TTL_S, err);
    if (st != CP_OK)
        goto fail;
    *out = p;
    return CP_OK;

fail:
    principal_free(p);
    return st;
}

/* --- the service ------------------------------------------------------------ */

cp_status session_service_create(const session_config *cfg, session_service **out,
                                  cp_error *err)
{
    session_service *s;

    *out = NULL;
    if (cfg == NULL || cfg->dir == NULL || cfg->kv == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a session service needs a directory and a kv");
    if (cfg->service_token != NULL && cfg->service_token[0] != '\0' &&
        strlen(cfg->service_token) > SESSION_TOKEN_MAX)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "service token longer than %d bytes", SESSION_TOKEN_MAX);
    if (credential_init() != CP_OK)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "libsodium failed to initialise");

    s = cp_calloc(1, sizeof *s);
    if (s == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    s->dir = cfg->dir;
    s->kv = cfg->kv;
    s->idle_s = cfg->idle_s != 0 ? cfg->idle_s : SESSION_IDLE_DEFAULT_S;
    s->absolute_s = cfg->absolute_s != 0 ? cfg->absolute_s : SESSION_ABSOLUTE_DEFAULT_S;
    s->lock_after = cfg->lock_after != 0 ? cfg->lock_after : SESSION_LOCK_AFTER_DEFAULT;
    s->lock_window_s = cfg->lock_window_s != 0 ? cfg->lock_window_s
                                               : SESSION_LOCK_WINDOW_DEFAULT_S;
    s->lock_s = cfg->lock_s != 0 ? cfg->lock_s : SESSION_LOCK_DEFAULT_S;
    s->mfa_admins = cfg->mfa_admins;
    s->mfa_doctors = cfg->mfa_doctors;
    s->now_us = cfg->now_us;
    s->local_ms = cfg->local_ms;
    pthread_mutex_init(&s->local_lock, NULL);

    /* Only the hash is kept, so that comparing it takes the same time. */
    if (cfg->service_token != NULL && cfg->service_token[0] != '\0') {
        credential_token_hash(cfg->service_token, s->service_hash);
        s->has_service = true;
    }
    s->issuer = cp_strdup(cfg->totp_issuer != NULL ? cfg->totp_issuer : "cloudpacs");
    if (s->issuer == NULL) {
        pthread_mutex_destroy(&s->local_lock);
        cp_free(s);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    }
    *out = s;
    return CP_OK;
}

void session_service_destroy(session_service *s)
{
    if (s == NULL)
        return;
    sodium_memzero(s->service_hash, sizeof s->service_hash);
    for (size_t i = 0; i < SESSION_LOCAL_SLOTS; i++)
        principal_free(s->local[i].p);
    pthread_mutex_destroy(&s->local_lock);
    cp_free(s->issuer);
    cp_free(s);
}

/* --- logins ------------------------------------------------------------------ */

/* Seconds a name stays locked; 0 when it is not locked. */
static cp_status lock_remaining(session_service *s, const char *name, unsigned *left,
                                cp_error *err)
{
    char key[KEY_CAP];
    const char *argv[2];
    kv_reply *r = NULL;
    cp_status st;

    *left = 0;
    st = make_key(s, key, "lock", name, err);
    if (st != CP_OK)
        return st;
    argv[0] = "TTL";
    argv[1] = key;
    st = run(s, 2, argv, &r, err);
    if (st != CP_OK)
        return st;

    /* -2: no lock; -1: a lock without expiry, which only a bug would leave. */
    if (r->type == KV_REPLY_INTEGER && r->integer > 0)
        *left = (unsigned)r->integer;
    else if (r->type == KV_REPLY_INTEGER && r->integer == -1)
        *left = s->lock_s;
    kv_reply_free(r);
    return CP_OK;
}

static cp_status count_failure(session_service *s, const char *name, cp_error *err)
{
    char fail_key[KEY_CAP], lock_key[KEY_CAP];
    char window[16], after[16], lock[16];
    const char *keys[2], *args[3];
    kv_reply *r = NULL;
    cp_status st;

    st = make_key(s, fail_key, "fail", name, err);
    if (st == CP_OK)
        st = make_key(s, lock_key, "lock", name, err);
    if (st != CP_OK)
        return st;
    snprintf(window, sizeof window, "%u", s->lock_window_s);
    snprintf(after, sizeof after, "%u", s->lock_after);
    snprintf(lock, sizeof lock, "%u", s->lock_s);
    keys[0] = fail_key;
    keys[1] = lock_key;
    args[0] = window;
    args[1] = after;
    args[2] = lock;
    st = run_script(s, script_fail, 2, keys, 3, args, &r, err);
    kv_reply_free(r);
    return st;
}

static cp_status clear_failures(session_service *s, const char *name, cp_error *err)
{
    char key[KEY_CAP];
    const char *argv[2];
    cp_status st;

    st = make_key(s, key, "fail", name, err);
    if (st != CP_OK)
        return st;
    argv[0] = "DEL";
    argv[1] = key;
    return run(s, 2, argv, NULL, err);
}

/*
 * The password step shared by login and session_resolve_password: lockout,
 * user, password, disabled. *result is OK only for an enabled user whose
 * password matched; failures are counted here.
 */
static cp_status check_password(session_service *s, const char *username,
                                const char *password, directory_user *user,
                                session_login_outcome *out, cp_error *err)
{
    char name[DIRECTORY_USERNAME_MAX + 1];
    char hash[DIRECTORY_HASH_MAX + 1];
    directory_institution inst;
    cp_status st;
    bool ok;

    out->result = SESSION_LOGIN_BAD_CREDENTIALS;
    if (password == NULL)
        password = "";
    if (!name_key(username, name)) {
        credential_password_burn(password);
        return CP_OK;
    }

    st = lock_remaining(s, name, &out->retry_after_s, err);
    if (st != CP_OK)
        return st;
    if (out->retry_after_s > 0) {
        out->result = SESSION_LOGIN_LOCKED;
        return CP_OK;
    }

    st = directory_user_by_name(s->dir, username, user, err);
    if (st == CP_ERR_NOT_FOUND) {
        cp_error_clear(err);
        credential_password_burn(password);
        return count_failure(s, name, err);
    }
    if (st != CP_OK)
        return st;
    out->user_id = user->id;

    st = directory_user_password(s->dir, user->id, hash, sizeof hash, err);
    if (st != CP_OK)
        return st;
    ok = credential_password_verify(hash, password);
    sodium_memzero(hash, sizeof hash);
    if (!ok)
        return count_failure(s, name, err);

    /* Told only after the right password, so that it reveals nothing else. */
    if (user->disabled) {
        out->result = SESSION_LOGIN_DISABLED;
        return CP_OK;
    }
    st = directory_institution_get(s->dir, user->institution_id, &inst, err);
    if (st != CP_OK)
        return st;
    if (inst.disabled) {
        out->result = SESSION_LOGIN_DISABLED;
        return CP_OK;
    }
    out->result = SESSION_LOGIN_OK;
    return CP_OK;
}

static bool mfa_required(const session_service *s, unsigned roles)
{
    if (s->mfa_admins && (roles & (ROLE_INSTITUTION_ADMIN | ROLE_SEPARATED)))
        return true;
    if (s->mfa_doctors && (roles & (ROLE_RADIOLOGIST | ROLE_REVIEWER)))
        return true;
    return false;
}

/*
 * Checks a code against the user's enrolled secret and burns its step.
 * *good is false for a wrong code or a step already used.
 */
static cp_status check_totp(session_service *s, int64_t user_id, const char *secret,
                            const char *code, bool *good, cp_error *err)
{
    char key[KEY_CAP], step_text[24], ttl[16];
    const char *keys[1], *args[2];
    int64_t step = 0;
    kv_reply *r = NULL;
    cp_status st;

    *good = false;
    if (!credential_totp_verify(secret, code, now_us(s) / US_PER_S, &step))
        return CP_OK;

    st = make_id_key(s, key, "totp", user_id, err);
    if (st != CP_OK)
        return st;
    snprintf(step_text, sizeof step_text, "%" PRId64, step);
    snprintf(ttl, sizeof ttl, "%d", SESSION_TOTP_USED_S);
    keys[0] = key;
    args[0] = step_text;
    args[1] = ttl;
    st = run_script(s, script_step, 1, keys, 2, args, &r, err);
    if (st != CP_OK)
        return st;
    *good = r->type == KV_REPLY_INTEGER && r->integer == 1;
    kv_reply_free(r);
    return CP_OK;
}

static cp_status second_factor(session_service *s, const directory_user *user,
                               const char *name, const char *code,
                               session_login_outcome *out, cp_error *err)
{
    char secret[DIRECTORY_SECRET_MAX + 1];
    cp_status st;
    bool good = false;

    if (!mfa_required(s, user->roles))
        return CP_OK;
    if (!user->totp_enabled) {
        out->enrol_only = true;
        return CP_OK;
    }
    if (code == NULL || code[0] == '\0') {
        out->result = SESSION_LOGIN_MFA_REQUIRED;
        return CP_OK;
    }

    st = directory_user_totp(s->dir, user->id, secret, sizeof secret, err);
    if (st == CP_OK)
        st = check_totp(s, user->id, secret, code, &good, err);
    sodium_memzero(secret, sizeof secret);
    if (st != CP_OK)
        return st;
    if (!good) {
        out->result = SESSION_LOGIN_MFA_BAD;
        return count_failure(s, name, err);
    }
    return CP_OK;
}

static cp_status open_session(session_service *s, int64_t user_id, const char *peer,
                              session_login_outcome *out, cp_error *err)
{
    char hash[65], sess_key[KEY_CAP], usess_key[KEY_CAP];
    char uid[24], created[24], abs[24], idle[16], usess_ttl[16];
    const char *keys[2], *args[8];
    int64_t now = now_us(s);
    kv_reply *r = NULL;
    cp_status st;

    if (credential_token(SESSION_PREFIX, out->token, sizeof out->token) != CP_OK)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no session token could be made");
    credential_token_hash(out->token, hash);
    st = make_key(s, sess_key, "sess", hash, err);
    if (st == CP_OK)
        st = make_id_key(s, usess_key, "usess", user_id, err);
    if (st != CP_OK)
        goto fail;

    out->expires_us = now + (int64_t)s->absolute_s * US_PER_S;
    snprintf(uid, sizeof uid, "%" PRId64, user_id);
    snprintf(created, sizeof created, "%" PRId64, now);
    snprintf(abs, sizeof abs, "%" PRId64, out->expires_us);
    snprintf(idle, sizeof idle, "%u", s->idle_s);
    snprintf(usess_ttl, sizeof usess_ttl, "%u", s->absolute_s);
    keys[0] = sess_key;
    keys[1] = usess_key;
    args[0] = uid;
    args[1] = created;
    args[2] = abs;
    args[3] = peer != NULL ? peer : "";
    args[4] = out->enrol_only ? "1" : "0";
    args[5] = idle;
    args[6] = hash;
    args[7] = usess_ttl;
    st = run_script(s, script_open, 2, keys, 8, args, &r, err);
    kv_reply_free(r);
    if (st != CP_OK)
        goto fail;
    return CP_OK;

fail:
    sodium_memzero(out->token, sizeof out->token);
    out->expires_us = 0;
    return st;
}

cp_status session_login(session_service *s, const char *username, const char *password,
                        const char *totp_code, const char *peer, session_login_outcome *out,
                        cp_error *err)
{
    directory_user user;
    char name[DIRECTORY_USERNAME_MAX + 1];
    cp_status st;

    memset(out, 0, sizeof *out);
    st = check_password(s, username, password, &user, out, err);
    if (st != CP_OK || out->result != SESSION_LOGIN_OK)
        return st;

    name_key(username, name);
    st = second_factor(s, &user, name, totp_code, out, err);
    if (st != CP_OK || out->result != SESSION_LOGIN_OK)
        return st;

    st = clear_failures(s, name, err);
    if (st != CP_OK)
        return st;
    return open_session(s, user.id, peer, out, err);
}

/* --- resolving ----------------------------------------------------------------- */

static void set_origin(principal *p, const char *session_hash, const char *peer)
{
    copy_text(p->session_id, sizeof p->session_id, session_hash);
    copy_text(p->peer, sizeof p->peer, peer);
}

/* --- sessions resolved a moment ago ---------------------------------------- */

/* The slot of a token hash: its first hex digits are already uniformly random. */
static local_slot *local_slot_for(session_service *s, const char *hash)
{
    unsigned v = 0;

    for (int i = 0; i < 6; i++)
        v = v * 16 + (unsigned)(isdigit((unsigned char)hash[i]) ? hash[i] - '0'
                                                                : (hash[i] | 0x20) - 'a' + 10);
    return &s->local[v % SESSION_LOCAL_SLOTS];
}

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

/*
 * A copy of the principal resolved for hash within local_ms, or NULL. Both
 * clocks must agree that it is recent: the service's (which tests move)
 * and the monotonic one (which a test clock does not stop).
 */
static principal *local_get(session_service *s, const char *hash, bool *enrol)
{
    local_slot *slot;
    principal *copy = NULL;
    int64_t window = (int64_t)s->local_ms * 1000, age, mono_age;

    if (s->local_ms == 0)
        return NULL;
    pthread_mutex_lock(&s->local_lock);
    slot = local_slot_for(s, hash);
    age = now_us(s) - slot->fetched_us;
    mono_age = mono_us() - slot->fetched_mono_us;
    if (slot->p != NULL && strcmp(slot->hash, hash) == 0 && age >= 0 && age < window &&
        mono_age >= 0 && mono_age < window && principal_copy(slot->p, &copy) == CP_OK)
        *enrol = slot->enrol;
    pthread_mutex_unlock(&s->local_lock);
    return copy;
}

/* Remembers what hash resolved to; a failed copy just leaves the slot empty. */
static void local_put(session_service *s, const char *hash, const principal *p, bool enrol)
{
    local_slot *slot;
    principal *copy = NULL;

    if (s->local_ms == 0)
        return;
    if (principal_copy(p, &copy) != CP_OK)
        copy = NULL;
    pthread_mutex_lock(&s->local_lock);
    slot = local_slot_for(s, hash);
    principal_free(slot->p);
    slot->p = copy;
    slot->enrol = enrol;
    slot->fetched_us = now_us(s);
    slot->fetched_mono_us = mono_us();
    copy_text(slot->hash, sizeof slot->hash, hash);
    pthread_mutex_unlock(&s->local_lock);
}

/* Forgets one session (hash) or, with NULL, every one. */
static void local_drop(session_service *s, const char *hash)
{
    pthread_mutex_lock(&s->local_lock);
    for (size_t i = 0; i < SESSION_LOCAL_SLOTS; i++) {
        local_slot *slot = &s->local[i];

        if (slot->p != NULL && (hash == NULL || strcmp(slot->hash, hash) == 0)) {
            principal_free(slot->p);
            slot->p = NULL;
        }
    }
    pthread_mutex_unlock(&s->local_lock);
}

static cp_status resolve_session(session_service *s, const char *token, const char *peer,
                                 principal **out, cp_error *err)
{
    char hash[65], key[KEY_CAP], now_text[24], idle[16], idle_us[24];
    const char *keys[1], *args[3];
    kv_reply *r = NULL;
    principal *p = NULL;
    int64_t user_id;
    bool enrol = false;
    cp_status st;

    credential_token_hash(token, hash);
    p = local_get(s, hash, &enrol);
    if (p != NULL) {
        p->enrol_only = enrol;
        set_origin(p, hash, peer);
        *out = p;
        return CP_OK;
    }
    st = make_key(s, key, "sess", hash, err);
    if (st != CP_OK)
        return st;
    snprintf(now_text, sizeof now_text, "%" PRId64, now_us(s));
    snprintf(idle, sizeof idle, "%u", s->idle_s);
    snprintf(idle_us, sizeof idle_us, "%" PRId64, (int64_t)s->idle_s * US_PER_S);
    keys[0] = key;
    args[0] = now_text;
    args[1] = idle;
    args[2] = idle_us;
    st = run_script(s, script_use, 1, keys, 3, args, &r, err);
    if (st != CP_OK)
        return st;

    if (r->type != KV_REPLY_ARRAY || r->count != 2 ||
        r->elements[0]->type != KV_REPLY_STRING || r->elements[1]->type != KV_REPLY_STRING) {
        kv_reply_free(r);
        return unauthenticated(err, "no such session");
    }
    user_id = strtoll(r->elements[0]->str, NULL, 10);
    enrol = strcmp(r->elements[1]->str, "0") != 0;
    kv_reply_free(r);

    st = user_principal(s, user_id, &p, err);
    if (st != CP_OK)
        return st;
    p->enrol_only = enrol;
    local_put(s, hash, p, enrol);
    set_origin(p, hash, peer);
    *out = p;
    return CP_OK;
}

/*
 * An API token: checked against the directory, then cached for at most
 * SESSION_TOKEN_CACHE_S seconds (less when it expires sooner), which bounds
 * how long a revoked token keeps working.
 */
static cp_status resolve_api_token(session_service *s, const char *token, const char *peer,
                                   principal **out, cp_error *err)
{
    char hash[65], key[KEY_CAP];
    directory_api_token t;
    principal *p = NULL;
    cache_stamp stamp = { 0 };
    int64_t gen, now = now_us(s), ttl = SESSION_TOKEN_CACHE_S;
    cp_status st;

    credential_token_hash(token, hash);
    st = make_key(s, key, "tok", hash, err);
    if (st != CP_OK)
        return st;
    st = cache_get(s, key, &p, &stamp, &gen, err);
    if (st != CP_OK)
        return st;
    if (p != NULL && stamp.generation == gen && p->kind == PRINCIPAL_TOKEN) {
        set_origin(p, "", peer);
        *out = p;
        return CP_OK;
    }
    principal_free(p);
    p = NULL;

    st = directory_token_check(s->dir, token, &t, err);
    if (st == CP_ERR_NOT_FOUND || st == CP_ERR_UNAUTHENTICATED || st == CP_ERR_FORBIDDEN ||
        st == CP_ERR_INVALID || st == CP_ERR_MALFORMED)
        return unauthenticated(err, "API token unknown, revoked or expired");
    if (st != CP_OK)
        return st;
    if (t.revoked || (t.expires_us != 0 && t.expires_us <= now))
        return unauthenticated(err, "API token revoked or expired");
    st = build_device(s, PRINCIPAL_TOKEN, t.id, t.name, t.institution_id, t.roles, &p, err);
    if (st != CP_OK)
        return st;

    if (t.expires_us != 0 && (t.expires_us - now) / US_PER_S < ttl)
        ttl = (t.expires_us - now) / US_PER_S;
    if (ttl > 0) {
        stamp.generation = gen;
        stamp.checked_us = now;
        st = cache_put(s, key, p, &stamp, (unsigned)ttl, err);
        if (st != CP_OK) {
            principal_free(p);
            return st;
        }
    }
    set_origin(p, "", peer);
    *out = p;
    return CP_OK;
}

static cp_status service_principal(const char *peer, principal **out)
{
    principal *p = principal_new();

    if (p == NULL)
        return CP_ERR_NOMEM;
    p->kind = PRINCIPAL_SERVICE;
    copy_text(p->name, sizeof p->name, "service");
    set_origin(p, "", peer);
    *out = p;
    return CP_OK;
}

static bool has_prefix(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

cp_status session_resolve(session_service *s, const char *token, const char *peer,
                          principal **out, cp_error *err)
{
    size_t len;

    *out = NULL;
    len = token != NULL ? strnlen(token, SESSION_TOKEN_MAX + 1) : 0;
    if (len == 0 || len > SESSION_TOKEN_MAX)
        return unauthenticated(err, "no usable token");

    if (s->has_service) {
        char hash[65];

        credential_token_hash(token, hash);
        if (sodium_memcmp(hash, s->service_hash, 64) == 0) {
            if (service_principal(peer, out) != CP_OK)
                return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                    "out of memory");
            return CP_OK;
        }
    }
    if (has_prefix(token, SESSION_PREFIX))
        return resolve_session(s, token, peer, out, err);
    if (has_prefix(token, TOKEN_PREFIX))
        return resolve_api_token(s, token, peer, out, err);
    return unauthenticated(err, "unknown kind of token");
}

cp_status session_resolve_ae(session_service *s, const char *ae_title, const char *peer,
                             principal **out, cp_error *err)
{
    directory_ae ae;
    cp_status st;

    *out = NULL;
    if (ae_title == NULL || ae_title[0] == '\0')
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no AE title");
    st = directory_ae_get(s->dir, ae_title, &ae, err);
    if (st != CP_OK)
        return st;

    /* An AE acts as a technician of its institution: it sends and queries. */
    st = build_device(s, PRINCIPAL_AE, 0, ae.title, ae.institution_id, ROLE_TECHNICIAN, out,
                      err);
    if (st != CP_OK)
        return st;
    set_origin(*out, "", peer);
    return CP_OK;
}

cp_status session_resolve_password(session_service *s, const char *username,
                                   const char *password, const char *peer, principal **out,
                                   cp_error *err)
{
    session_login_outcome outcome;
    directory_user user;
    char name[DIRECTORY_USERNAME_MAX + 1];
    cp_status st;

    *out = NULL;
    memset(&outcome, 0, sizeof outcome);
    st = check_password(s, username, password, &user, &outcome, err);
    if (st != CP_OK)
        return st;
    switch (outcome.result) {
    case SESSION_LOGIN_OK:
        break;
    case SESSION_LOGIN_LOCKED:
        return unauthenticated(err, "locked out");
    case SESSION_LOGIN_DISABLED:
        return unauthenticated(err, "disabled");
    default:
        return unauthenticated(err, "bad credentials");
    }

    name_key(username, name);
    st = clear_failures(s, name, err);
    if (st != CP_OK)
        return st;
    st = user_principal(s, user.id, out, err);
    if (st != CP_OK)
        return st;
    set_origin(*out, "", peer);
    return CP_OK;
}

/* --- ending and invalidating ----------------------------------------------------- */

cp_status session_logout(session_service *s, const char *token, cp_error *err)
{
    char hash[65], key[KEY_CAP], usess_key[KEY_CAP];
    const char *argv[3];
    kv_reply *r = NULL;
    int64_t user_id = 0;
    cp_status st;

    if (token == NULL || !has_prefix(token, SESSION_PREFIX) ||
        strnlen(token, SESSION_TOKEN_MAX + 1) > SESSION_TOKEN_MAX)
        return CP_OK;
    credential_token_hash(token, hash);
    local_drop(s, hash);
    st = make_key(s, key, "sess", hash, err);
    if (st != CP_OK)
        return st;

    argv[0] = "HGET";
    argv[1] = key;
    argv[2] = "uid";
    st = run(s, 3, argv, &r, err);
    if (st != CP_OK)
        return st;
    if (r->type == KV_REPLY_STRING)
        user_id = strtoll(r->str, NULL, 10);
    kv_reply_free(r);

    argv[0] = "DEL";
    st = run(s, 2, argv, NULL, err);
    if (st != CP_OK || user_id <= 0)
        return st;

    st = make_id_key(s, usess_key, "usess", user_id, err);
    if (st != CP_OK)
        return st;
    argv[0] = "SREM";
    argv[1] = usess_key;
    argv[2] = hash;
    return run(s, 3, argv, NULL, err);
}

cp_status session_end_user(session_service *s, int64_t user_id, cp_error *err)
{
    char usess_key[KEY_CAP];
    const char *argv[SESSION_END_BATCH + 1];
    char (*keys)[KEY_CAP] = NULL;
    kv_reply *r = NULL;
    size_t i, n = 0, batch = 0;
    cp_status st;

    local_drop(s, NULL);
    st = make_id_key(s, usess_key, "usess", user_id, err);
    if (st != CP_OK)
        return st;
    argv[0] = "SMEMBERS";
    argv[1] = usess_key;
    st = run(s, 2, argv, &r, err);
    if (st != CP_OK)
        return st;

    keys = cp_malloc(SESSION_END_BATCH * sizeof *keys);
    if (keys == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "out of memory");
        goto done;
    }

    /*
     * The sessions first, in batches, and the set last: a failure half-way
     * leaves the set, so that calling again ends the rest.
     */
    if (r->type == KV_REPLY_ARRAY)
        n = r->count;
    argv[0] = "DEL";
    for (i = 0; i < n; i++) {
        const kv_reply *e = r->elements[i];

        if (e->type == KV_REPLY_STRING &&
            kv_key(s->kv, keys[batch], KEY_CAP, "sess", e->str) == CP_OK) {
            argv[batch + 1] = keys[batch];
            batch++;
        }
        if (batch == SESSION_END_BATCH || (i + 1 == n && batch > 0)) {
            st = run(s, batch + 1, argv, NULL, err);
            if (st != CP_OK)
                goto done;
            batch = 0;
        }
    }
    argv[1] = usess_key;
    st = run(s, 2, argv, NULL, err);

done:
    cp_free(keys);
    kv_reply_free(r);
    return st;
}

cp_status session_invalidate(session_service *s, int64_t user_id, cp_error *err)
{
    char key[KEY_CAP];
    const char *argv[2];
    cp_status st;

    if (user_id < 0)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "negative user id");
    local_drop(s, NULL);
    if (user_id == 0) {
        /* Every cached principal carries the generation it was built in. */
        st = make_key(s, key, "profgen", NULL, err);
        argv[0] = "INCR";
    } else {
        st = make_id_key(s, key, "prof", user_id, err);
        argv[0] = "DEL";
    }
    if (st != CP_OK)
        return st;
    argv[1] = key;
    return run(s, 2, argv, NULL, err);
}

cp_status session_unlock(session_service *s, const char *username, cp_error *err)
{
    char name[DIRECTORY_USERNAME_MAX + 1], fail_key[KEY_CAP], lock_key[KEY_CAP];
    const char *argv[3];
    cp_status st;

    if (!name_key(username, name))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "not a username");
    st = make_key(s, fail_key, "fail", name, err);
    if (st == CP_OK)
        st = make_key(s, lock_key, "lock", name, err);
    if (st != CP_OK)
        return st;
    argv[0] = "DEL";
    argv[1] = fail_key;
    argv[2] = lock_key;
    return run(s, 3, argv, NULL, err);
}

/* --- second-factor enrolment --------------------------------------------------- */

static cp_status need_user(const principal *p, cp_error *err)
{
    if (p == NULL || p->kind != PRINCIPAL_USER || p->id <= 0)
        return cp_error_set(err, CP_ERR_FORBIDDEN, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "only a user enrols a second factor");
    return CP_OK;
}

cp_status session_totp_begin(session_service *s, const principal *p, char *secret, size_t scap,
                             char *uri, size_t ucap, cp_error *err)
{
    char fresh[DIRECTORY_SECRET_MAX + 1], key[KEY_CAP], ttl[16];
    const char *argv[5];
    cp_status st;

    st = need_user(p, err);
    if (st != CP_OK)
        return st;
    if (credential_totp_secret(fresh, sizeof fresh) != CP_OK)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no TOTP secret could be made");
    if (strlen(fresh) >= scap ||
        credential_totp_uri(fresh, s->issuer, p->name, uri, ucap) != CP_OK) {
        st = cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "buffer too small for the secret or its URI");
        goto done;
    }

    st = make_id_key(s, key, "totpp", p->id, err);
    if (st != CP_OK)
        goto done;
    snprintf(ttl, sizeof ttl, "%d", SESSION_TOTP_PENDING_S);
    argv[0] = "SET";
    argv[1] = key;
    argv[2] = fresh;
    argv[3] = "EX";
    argv[4] = ttl;
    st = run(s, 5, argv, NULL, err);
    if (st != CP_OK)
        goto done;
    copy_text(secret, scap, fresh);

done:
    sodium_memzero(fresh, sizeof fresh);
    return st;
}

cp_status session_totp_confirm(session_service *s, const principal *p, const char *token,
                               const char *code, cp_error *err)
{
    char secret[DIRECTORY_SECRET_MAX + 1], key[KEY_CAP], sess_key[KEY_CAP], hash[65];
    char uid[24];
    const char *argv[2], *keys[1], *args[1];
    kv_reply *r = NULL;
    cp_status st;
    bool good = false;

    secret[0] = '\0';
    st = need_user(p, err);
    if (st != CP_OK)
        return st;
    local_drop(s, NULL);
    st = make_id_key(s, key, "totpp", p->id, err);
    if (st != CP_OK)
        return st;
    argv[0] = "GET";
    argv[1] = key;
    st = run(s, 2, argv, &r, err);
    if (st != CP_OK)
        return st;
    if (r->type != KV_REPLY_STRING || r->len >= sizeof secret) {
        kv_reply_free(r);
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no enrolment begun (or it expired)");
    }
    copy_text(secret, sizeof secret, r->str);
    sodium_memzero(r->str, r->len);
    kv_reply_free(r);

    st = check_totp(s, p->id, secret, code != NULL ? code : "", &good, err);
    if (st != CP_OK)
        goto done;
    if (!good) {
        st = cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "wrong code");
        goto done;
    }
    st = directory_user_set_totp(s->dir, p->id, secret, err);
    if (st != CP_OK)
        goto done;
    argv[0] = "DEL";
    st = run(s, 2, argv, NULL, err);
    if (st != CP_OK || token == NULL || !has_prefix(token, SESSION_PREFIX) ||
        strnlen(token, SESSION_TOKEN_MAX + 1) > SESSION_TOKEN_MAX)
        goto done;

    credential_token_hash(token, hash);
    st = make_key(s, sess_key, "sess", hash, err);
    if (st != CP_OK)
        goto done;
    snprintf(uid, sizeof uid, "%" PRId64, p->id);
    keys[0] = sess_key;
    args[0] = uid;
    st = run_script(s, script_enrolled, 1, keys, 1, args, &r, err);
    kv_reply_free(r);

done:
    sodium_memzero(secret, sizeof secret);
    return st;
}
