/*
 * dispatch.c - the dispatch engine of remote reading: the live pool of open
 * orders in Redis, grab, assign, fallback, leases, deadlines and the timer
 * lease, with SQL (order.c) as the truth that Redis is rebuilt from.
 *
 * Not a part of DICOM: the orders name studies (PS3.3 C.7.2.1) but who
 * reads them, and when, is the reading centre's workflow (DESIGN.md, "The
 * reading-order model"; the fairness rules of the domain research, 2.5 and
 * 2.6: top-K visibility, weighted caps, patient affinity, aging by
 * deadline, leases and cool-downs).
 *
 * Every contended step is one Lua script that checks the order's state and
 * version in Redis and moves it, so that of simultaneous grabs exactly one
 * wins. The SQL row follows with a compare-and-set on the same version;
 * when SQL refuses, the order's Redis copy is rewritten from SQL (resync),
 * which undoes the script. Steps nobody competes for (a new order, a report
 * workflow change, a rebuild) write the Redis copy with one script too
 * (set_script), from the SQL row.
 *
 * The Redis copy of an order (hash disp:ord:<id>):
 *   st ver      state and version, as in SQL
 *   mod bp req  modality, body part, requesting institution (eligibility)
 *   pat w dl    patient key, weight, deadline
 *   pr          priority (0 routine, 1 urgent)
 *   doc         the holder or offeree (0: none)
 *   x:<doctor>  until when that doctor may not take it again (cool-down)
 *   nf          1 once "nobody to fall back to" has been noted
 * Timers are members "<kind>:<id>" of disp:timers: open (claim not opened),
 * rep and rep2 (first and second report lease), ack (offer unanswered),
 * grab (grab window) and alert (deadline share).
 */
#include "consult/dispatch.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"

#define US_PER_S INT64_C(1000000)

/* One granted institution of a doctor's active contract. */
typedef struct doc_grant {
    int64_t institution_id;
    int64_t reading_id;
    char modalities[DIRECTORY_LIST_MAX + 1];
} doc_grant;

/* What eligibility needs of one doctor, cached for DISPATCH_DOCTOR_CACHE_S. */
typedef struct doc_info {
    int64_t id;
    int64_t fetched_ms;                 /* monotonic */
    unsigned roles;
    bool disabled;
    int64_t institution_id;
    directory_qualification *quals;
    size_t qual_count;
    doc_grant *grants;
    size_t grant_count;
} doc_info;

struct dispatch {
    kv *kv;
    order_store *orders;
    directory *dir;
    dispatch_rules rules;
    char instance[128];
    int64_t (*now_us)(void);
    void (*on_event)(void *ctx, const dispatch_event *e);
    void *event_ctx;
    unsigned lease_ms;
    char prefix[KV_KEY_MAX];            /* "cp:disp:" */

    pthread_mutex_t lock;               /* the cache */
    doc_info **cache;
    size_t cache_count;
    size_t cache_cap;
    atomic_bool leader;
    _Atomic int64_t leader_ms;          /* monotonic time of the last renewal */
    atomic_bool stale;                  /* the epoch must go, Redis was away */

    pthread_mutex_t run_lock;           /* the tick thread */
    pthread_cond_t run_cond;
    pthread_t thread;
    bool running;
    bool stopping;
};

/* --- Lua ------------------------------------------------------------------ */

/*
 * Shared by the scripts: ARGV[1] is the key prefix ("cp:disp:"). hold and
 * unhold keep a doctor's claims, load and patient key in step with the
 * orders they hold.
 */
#define LUA_LIB \
    "local P = ARGV[1]\n" \
    "local function unhold(o, id, doc)\n" \
    "  local w = tonumber(redis.call('HGET', o, 'w') or '0')\n" \
    "  if redis.call('SREM', P..'claims:'..doc, id) == 1 then\n" \
    "    if redis.call('DECRBY', P..'load:'..doc, w) <= 0 then\n" \
    "      redis.call('DEL', P..'load:'..doc) end\n" \
    "  end\n" \
    "  local pat = redis.call('HGET', o, 'pat')\n" \
    "  if pat and pat ~= '' and redis.call('GET', P..'patient:'..pat) == doc then\n" \
    "    local still = false\n" \
    "    for _, m in ipairs(redis.call('SMEMBERS', P..'claims:'..doc)) do\n" \
    "      if redis.call('HGET', P..'ord:'..m, 'pat') == pat then still = true end\n" \
    "    end\n" \
    "    if not still then redis.call('DEL', P..'patient:'..pat) end\n" \
    "  end\n" \
    "end\n" \
    "local function hold(o, id, doc)\n" \
    "  local w = tonumber(redis.call('HGET', o, 'w') or '0')\n" \
    "  if redis.call('SADD', P..'claims:'..doc, id) == 1 then\n" \
    "    redis.call('INCRBY', P..'load:'..doc, w) end\n" \
    "  local pat = redis.call('HGET', o, 'pat')\n" \
    "  if pat and pat ~= '' then redis.call('SET', P..'patient:'..pat, doc) end\n" \
    "end\n" \
    "local function untime(id)\n" \
    "  redis.call('ZREM', P..'timers', 'open:'..id, 'rep:'..id, 'rep2:'..id,\n" \
    "             'ack:'..id, 'grab:'..id)\n" \
    "end\n"

/*
 * Writes an order's copy from SQL. ARGV: P id st ver mod bp req pat w dl
 * doc force priority, then kind/due pairs of its timers. st 0 removes it. Without
 * force, a copy already at a newer version is left alone.
 */
static const char set_script[] = LUA_LIB
    "local id = ARGV[2]\n"
    "local o = P..'ord:'..id\n"
    "local cur = redis.call('HGET', o, 'ver')\n"
    "if ARGV[12] ~= '1' and cur and tonumber(cur) > tonumber(ARGV[4]) then return 0 end\n"
    "local ost = redis.call('HGET', o, 'st')\n"
    "local odoc = redis.call('HGET', o, 'doc')\n"
    "if (ost == '4' or ost == '6') and odoc and odoc ~= '0' then unhold(o, id, odoc) end\n"
    "redis.call('ZREM', P..'pool', id)\n"
    "untime(id)\n"
    "if ARGV[3] == '0' then\n"
    "  redis.call('ZREM', P..'timers', 'alert:'..id)\n"
    "  redis.call('DEL', o) return 1 end\n"
    "redis.call('HSET', o, 'st', ARGV[3], 'ver', ARGV[4], 'mod', ARGV[5], 'bp', ARGV[6],\n"
    "  'req', ARGV[7], 'pat', ARGV[8], 'w', ARGV[9], 'dl', ARGV[10], 'doc', ARGV[11],\n"
    "  'pr', ARGV[13])\n"
    "if ARGV[3] == '2' then redis.call('ZADD', P..'pool', ARGV[10], id) end\n"
    "if (ARGV[3] == '4' or ARGV[3] == '6') and ARGV[11] ~= '0' then\n"
    "  hold(o, id, ARGV[11]) end\n"
    "if ARGV[3] == '5' or ARGV[3] == '7' then\n"
    "  redis.call('ZREM', P..'timers', 'alert:'..id) end\n"
    "local i = 14\n"
    "while ARGV[i + 1] do\n"
    "  redis.call('ZADD', P..'timers', ARGV[i + 1], ARGV[i]..':'..id)\n"
    "  i = i + 2\n"
    "end\n"
    "return 1\n";

/*
 * Grab (and the engine's own claims: fallback, affinity). ARGV: P id ver
 * doc cap now force new_ver open_due. 0 claimed, 1 gone, 2 over the cap,
 * 3 the doctor is cooling down. force skips the cap, never the cool-down.
 */
static const char grab_script[] = LUA_LIB
    "local id = ARGV[2]\n"
    "local o = P..'ord:'..id\n"
    "local doc = ARGV[4]\n"
    "if redis.call('HGET', o, 'st') ~= '2' or redis.call('HGET', o, 'ver') ~= ARGV[3]\n"
    "  then return 1 end\n"
    "local x = redis.call('HGET', o, 'x:'..doc)\n"
    "if x and tonumber(x) > tonumber(ARGV[6]) then return 3 end\n"
    "if ARGV[7] ~= '1' then\n"
    "  local w = tonumber(redis.call('HGET', o, 'w') or '0')\n"
    "  local l = tonumber(redis.call('GET', P..'load:'..doc) or '0')\n"
    "  if l > 0 and l + w > tonumber(ARGV[5]) then return 2 end\n"
    "end\n"
    "redis.call('HSET', o, 'st', '4', 'ver', ARGV[8], 'doc', doc)\n"
    "redis.call('ZREM', P..'pool', id)\n"
    "hold(o, id, doc)\n"
    "untime(id)\n"
    "redis.call('ZADD', P..'timers', ARGV[9], 'open:'..id)\n"
    "return 0\n";

/* Assign: ARGV P id ver doc new_ver ack_due. 0 offered, 1 gone. */
static const char offer_script[] = LUA_LIB
    "local id = ARGV[2]\n"
    "local o = P..'ord:'..id\n"
    "if redis.call('HGET', o, 'st') ~= '2' or redis.call('HGET', o, 'ver') ~= ARGV[3]\n"
    "  then return 1 end\n"
    "redis.call('HSET', o, 'st', '3', 'ver', ARGV[5], 'doc', ARGV[4])\n"
    "redis.call('ZREM', P..'pool', id)\n"
    "untime(id)\n"
    "redis.call('ZADD', P..'timers', ARGV[6], 'ack:'..id)\n"
    "return 0\n";

/* The offeree accepts: ARGV P id ver doc new_ver open_due. 0 claimed, 1 gone. */
static const char accept_script[] = LUA_LIB
    "local id = ARGV[2]\n"
    "local o = P..'ord:'..id\n"
    "if redis.call('HGET', o, 'st') ~= '3' or redis.call('HGET', o, 'ver') ~= ARGV[3] or\n"
    "   redis.call('HGET', o, 'doc') ~= ARGV[4] then return 1 end\n"
    "redis.call('HSET', o, 'st', '4', 'ver', ARGV[5])\n"
    "hold(o, id, ARGV[4])\n"
    "untime(id)\n"
    "redis.call('ZADD', P..'timers', ARGV[6], 'open:'..id)\n"
    "return 0\n";

/*
 * Back to the pool (give back, lapse, decline, no answer): ARGV P id from
 * ver doc new_ver excluded_until grab_due. 0 pooled, 1 gone.
 */
static const char return_script[] = LUA_LIB
    "local id = ARGV[2]\n"
    "local o = P..'ord:'..id\n"
    "local doc = ARGV[5]\n"
    "if redis.call('HGET', o, 'st') ~= ARGV[3] or redis.call('HGET', o, 'ver') ~= ARGV[4]\n"
    "   or redis.call('HGET', o, 'doc') ~= doc then return 1 end\n"
    "if ARGV[3] == '4' then unhold(o, id, doc) end\n"
    "redis.call('HSET', o, 'st', '2', 'ver', ARGV[6], 'doc', '0')\n"
    "if ARGV[7] ~= '0' then redis.call('HSET', o, 'x:'..doc, ARGV[7]) end\n"
    "redis.call('ZADD', P..'pool', redis.call('HGET', o, 'dl'), id)\n"
    "untime(id)\n"
    "redis.call('ZADD', P..'timers', ARGV[8], 'grab:'..id)\n"
    "return 0\n";

/* The study was opened: ARGV P id doc report_due. 0 done, 1 not held. */
static const char open_script[] = LUA_LIB
    "local id = ARGV[2]\n"
    "local o = P..'ord:'..id\n"
    "if redis.call('HGET', o, 'st') ~= '4' or redis.call('HGET', o, 'doc') ~= ARGV[3]\n"
    "  then return 1 end\n"
    "if redis.call('ZREM', P..'timers', 'open:'..id) == 1 then\n"
    "  redis.call('ZADD', P..'timers', ARGV[4], 'rep:'..id) end\n"
    "return 0\n";

/* Takes the due timers: ARGV P now max. */
static const char pop_script[] =
    "local k = ARGV[1]..'timers'\n"
    "local due = redis.call('ZRANGEBYSCORE', k, '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])\n"
    "for _, m in ipairs(due) do redis.call('ZREM', k, m) end\n"
    "return due\n";

/*
 * A page of the pool for one doctor: ARGV P start stop doc now. Returns
 * id, ver, mod, bp, req, w, excluded for each entry, then the doctor's load.
 */
static const char page_script[] =
    "local P = ARGV[1]\n"
    "local out = {}\n"
    "for _, id in ipairs(redis.call('ZRANGE', P..'pool', ARGV[2], ARGV[3])) do\n"
    "  local f = redis.call('HMGET', P..'ord:'..id, 'ver', 'mod', 'bp', 'req', 'w',\n"
    "                       'x:'..ARGV[4])\n"
    "  local x = '0'\n"
    "  if f[6] and tonumber(f[6]) > tonumber(ARGV[5]) then x = '1' end\n"
    "  table.insert(out, id)\n"
    "  for j = 1, 5 do table.insert(out, f[j] or '') end\n"
    "  table.insert(out, x)\n"
    "end\n"
    "table.insert(out, redis.call('GET', P..'load:'..ARGV[4]) or '0')\n"
    "return out\n";

/* Takes or renews the timer lease: KEYS[1] leader, ARGV instance ms. */
static const char lease_script[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end\n"
    "return 0\n";

/* Gives the lease up if this instance holds it. */
static const char unlease_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* Removes every rebuildable key: ARGV P. Not disp:leader, online or duty. */
static const char clear_script[] =
    "local P = ARGV[1]\n"
    "local cursor = '0'\n"
    "repeat\n"
    "  local r = redis.call('SCAN', cursor, 'MATCH', P..'*', 'COUNT', 1000)\n"
    "  cursor = r[1]\n"
    "  for _, k in ipairs(r[2]) do\n"
    "    local s = string.sub(k, #P + 1)\n"
    "    if s ~= 'leader' and s ~= 'online' and s ~= 'duty' then\n"
    "      redis.call('DEL', k) end\n"
    "  end\n"
    "until cursor == '0'\n"
    "return 0\n";

/* --- rules ---------------------------------------------------------------- */

void dispatch_rules_default(dispatch_rules *r)
{
    memset(r, 0, sizeof *r);
    r->deadline_s[ORDER_ROUTINE] = 7200;
    r->deadline_s[ORDER_URGENT] = 1800;
    r->grab_window_s[ORDER_ROUTINE] = 600;
    r->grab_window_s[ORDER_URGENT] = 180;
    r->open_s[ORDER_ROUTINE] = 300;
    r->open_s[ORDER_URGENT] = 120;
    r->report_s[ORDER_ROUTINE] = 3600;
    r->report_s[ORDER_URGENT] = 1200;
    r->ack_s = 120;
    r->alert_percent = 80;
    r->fallback_percent = 60;
    r->unit_read_s = 300;
    r->margin_s = 900;
    r->cap_units = 6;
    r->visible_max = 5;
    r->presence_s = 60;
    r->cooldown_s = 600;
    snprintf(r->weights, sizeof r->weights, "CR:1,DX:1,DR:1,MG:2,CT:3,MR:4,*:2");
}

/* Minutes from the config into seconds; absent keys keep *out. */
static cp_status rule_minutes(const cp_config *cfg, const char *key, unsigned *out,
                              int64_t min, cp_error *err)
{
    int64_t v;
    cp_status st;

    st = cp_config_get_int(cfg, "dispatch", key, (int64_t)(*out / 60), min, 60 * 24 * 30, &v,
                           err);
    if (st == CP_OK && cp_config_get(cfg, "dispatch", key, NULL) != NULL)
        *out = (unsigned)(v * 60);
    return st;
}

static cp_status rule_int(const cp_config *cfg, const char *key, unsigned *out, int64_t min,
                          int64_t max, cp_error *err)
{
    int64_t v;
    cp_status st;

    st = cp_config_get_int(cfg, "dispatch", key, (int64_t)*out, min, max, &v, err);
    if (st == CP_OK)
        *out = (unsigned)v;
    return st;
}

/* Whether "CR:1,CT:3" parses: items of a modality (or *) and a weight 1..100. */
static bool weights_valid(const char *w)
{
    const char *p = w;

    while (*p != '\0') {
        const char *colon = strchr(p, ':');
        char *end;
        long v;

        if (colon == NULL || colon == p || colon - p > INDEX_CS_MAX)
            return false;
        v = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || v < 1 || v > 100 || (*end != ',' && *end != '\0'))
            return false;
        p = *end == ',' ? end + 1 : end;
    }
    return true;
}

/* Modalities whose deadline a deadline_<MOD>_<priority>_minutes key may set. */
static const char *const override_modalities[] = {
    "CR", "DX", "DR", "MG", "CT", "MR", "US", "NM", "PT", "XA", "RF", "OT", "ES", "IO",
};

/* The two deadline_<modality>_<priority>_minutes keys of one modality. */
static cp_status rules_override(const cp_config *cfg, dispatch_rules *r, const char *modality,
                                cp_error *err)
{
    static const char *const prio_names[] = { "routine", "urgent" };

    for (size_t p = 0; p < 2; p++) {
        char key[64];
        unsigned secs = 0;
        dispatch_override *o;
        cp_status st;

        snprintf(key, sizeof key, "deadline_%s_%s_minutes", modality, prio_names[p]);
        if (cp_config_get(cfg, "dispatch", key, NULL) == NULL)
            continue;
        st = rule_minutes(cfg, key, &secs, 1, err);
        if (st != CP_OK)
            return st;
        if (r->override_count >= sizeof r->overrides / sizeof r->overrides[0])
            return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "dispatch: too many deadline overrides");
        o = &r->overrides[r->override_count++];
        snprintf(o->modality, sizeof o->modality, "%s", modality);
        o->priority = (order_priority)p;
        o->deadline_s = secs;
    }
    return CP_OK;
}

/*
 * The configuration cannot list a section's keys, so the overrides looked
 * for are those of the common modalities and of every modality the
 * weights name.
 */
static cp_status rules_overrides(const cp_config *cfg, dispatch_rules *r, cp_error *err)
{
    const size_t fixed = sizeof override_modalities / sizeof override_modalities[0];
    const char *p = r->weights;
    cp_status st = CP_OK;

    for (size_t m = 0; st == CP_OK && m < fixed; m++)
        st = rules_override(cfg, r, override_modalities[m], err);

    while (st == CP_OK && *p != '\0') {
        const char *colon = strchr(p, ':'), *comma;
        char mod[INDEX_CS_MAX + 1];
        size_t len, m;

        if (colon == NULL || (size_t)(colon - p) > INDEX_CS_MAX)
            break;
        len = (size_t)(colon - p);
        memcpy(mod, p, len);
        mod[len] = '\0';
        for (m = 0; m < fixed && strcasecmp(mod, override_modalities[m]) != 0; m++)
            ;
        if (m == fixed && strcmp(mod, "*") != 0)
            st = rules_override(cfg, r, mod, err);
        comma = strchr(colon, ',');
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return st;
}

cp_status dispatch_rules_from_config(const cp_config *cfg, dispatch_rules *r, cp_error *err)
{
    const char *w;
    cp_status st = CP_OK;

    dispatch_rules_default(r);
    if (cfg == NULL)
        return CP_OK;

    if (st == CP_OK)
        st = rule_minutes(cfg, "deadline_routine_minutes", &r->deadline_s[0], 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "deadline_urgent_minutes", &r->deadline_s[1], 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "grab_window_routine_minutes", &r->grab_window_s[0], 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "grab_window_urgent_minutes", &r->grab_window_s[1], 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "open_routine_minutes", &r->open_s[0], 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "open_urgent_minutes", &r->open_s[1], 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "report_routine_minutes", &r->report_s[0], 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "report_urgent_minutes", &r->report_s[1], 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "ack_minutes", &r->ack_s, 1, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "cooldown_minutes", &r->cooldown_s, 0, err);
    if (st == CP_OK)
        st = rule_int(cfg, "alert_percent", &r->alert_percent, 1, 100, err);
    if (st == CP_OK)
        st = rule_int(cfg, "fallback_percent", &r->fallback_percent, 1, 100, err);
    if (st == CP_OK)
        st = rule_int(cfg, "cap_units", &r->cap_units, 1, 1000, err);
    if (st == CP_OK)
        st = rule_int(cfg, "visible_max", &r->visible_max, 1, 100, err);
    if (st == CP_OK)
        st = rule_int(cfg, "presence_seconds", &r->presence_s, 5, 3600, err);
    if (st == CP_OK)
        st = rule_int(cfg, "unit_read_seconds", &r->unit_read_s, 1, 7200, err);
    if (st == CP_OK)
        st = rule_minutes(cfg, "deadline_margin_minutes", &r->margin_s, 0, err);
    if (st != CP_OK)
        return st;

    w = cp_config_get(cfg, "dispatch", "weights", NULL);
    if (w != NULL) {
        if (strlen(w) >= sizeof r->weights || !weights_valid(w))
            return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "dispatch.weights: expected \"CR:1,CT:3,*:2\"");
        snprintf(r->weights, sizeof r->weights, "%s", w);
    }
    return rules_overrides(cfg, r, err);
}

unsigned dispatch_weight(const dispatch_rules *r, const char *modality)
{
    const char *p = r->weights;
    unsigned any = 1;
    size_t mlen = modality != NULL ? strlen(modality) : 0;

    while (*p != '\0') {
        const char *colon = strchr(p, ':');
        char *end;
        long v;

        if (colon == NULL)
            break;
        v = strtol(colon + 1, &end, 10);
        if (v >= 1 && colon - p == 1 && p[0] == '*')
            any = (unsigned)v;
        else if (v >= 1 && mlen > 0 && (size_t)(colon - p) == mlen &&
                 strncasecmp(p, modality, mlen) == 0)
            return (unsigned)v;
        if (*end != ',')
            break;
        p = end + 1;
    }
    return any;
}

static unsigned deadline_for(const dispatch_rules *r, order_priority prio,
                             const char *modality)
{
    for (size_t i = 0; i < r->override_count; i++)
        if (r->overrides[i].priority == prio &&
            strcasecmp(r->overrides[i].modality, modality) == 0)
            return r->overrides[i].deadline_s;
    return r->deadline_s[prio == ORDER_URGENT];
}

/* --- small helpers -------------------------------------------------------- */

static int64_t real_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(const dispatch *d)
{
    return d->now_us != NULL ? d->now_us() : real_now_us();
}

static unsigned prio_index(const order *o)
{
    return o->priority == ORDER_URGENT ? 1u : 0u;
}

static void emit(dispatch *d, dispatch_event_kind kind, const order *o, const char *event,
                 int64_t doctor)
{
    dispatch_event e;

    if (d->on_event == NULL)
        return;
    e.kind = kind;
    e.order = o;
    e.event = event;
    e.doctor_id = doctor;
    d->on_event(d->event_ctx, &e);
}

/* A transition: STATUS for the clinic, and what the pool gained or lost. */
static void emit_move(dispatch *d, const order *o, order_state from, const char *event,
                      int64_t doctor)
{
    if (o->state == ORDER_POOLED)
        emit(d, DISPATCH_EVENT_POOLED, o, event, doctor);
    else if (from == ORDER_POOLED)
        emit(d, DISPATCH_EVENT_TAKEN, o, event, doctor);
    if (o->state == ORDER_OFFERED)
        emit(d, DISPATCH_EVENT_OFFER, o, event, doctor);
    emit(d, DISPATCH_EVENT_STATUS, o, event, doctor);
}

static cp_status refuse(cp_error *err, cp_status st, const char *what)
{
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "dispatch: %s", what);
}

/*
 * The patient key: who the patient is for affinity (requesting
 * institution, issuer, patient id), hashed so that no patient id appears
 * in a Redis key. "" when the order names no patient.
 */
static void patient_key(const order *o, char out[33])
{
    crypto_generichash_state h;
    unsigned char md[16];
    char head[32];

    out[0] = '\0';
    if (o->patient_id[0] == '\0')
        return;
    snprintf(head, sizeof head, "%lld", (long long)o->requesting_id);
    crypto_generichash_init(&h, NULL, 0, sizeof md);
    crypto_generichash_update(&h, (const unsigned char *)head, strlen(head) + 1);
    crypto_generichash_update(&h, (const unsigned char *)o->issuer, strlen(o->issuer) + 1);
    crypto_generichash_update(&h, (const unsigned char *)o->patient_id,
                              strlen(o->patient_id));
    crypto_generichash_final(&h, md, sizeof md);
    sodium_bin2hex(out, 33, md, sizeof md);
}

static bool same_patient(const order *a, const order *b)
{
    return a->patient_id[0] != '\0' && a->requesting_id == b->requesting_id &&
           strcmp(a->issuer, b->issuer) == 0 && strcmp(a->patient_id, b->patient_id) == 0;
}

/* "<prefix><suffix>" into out. */
static cp_status key_of(const dispatch *d, char *out, size_t cap, const char *suffix)
{
    int n = snprintf(out, cap, "%s%s", d->prefix, suffix);

    return n < 0 || (size_t)n >= cap ? CP_ERR_LIMIT : CP_OK;
}

/* --- Redis calls ---------------------------------------------------------- */

#define ARGS_MAX 32

/* Decimal text of integers, for script arguments. */
typedef struct numbuf {
    char text[ARGS_MAX][24];
    size_t used;
} numbuf;

static const char *num(numbuf *nb, int64_t v)
{
    char *t = nb->text[nb->used % ARGS_MAX];

    nb->used++;
    snprintf(t, sizeof nb->text[0], "%lld", (long long)v);
    return t;
}

/* Runs a script with ARGV args[0..n), expecting an integer reply. */
static cp_status eval_int(dispatch *d, const char *script, size_t nkeys, const char *const *keys,
                         size_t n, const char *const *args, long long *out, cp_error *err)
{
    kv_reply *r = NULL;
    cp_status st;

    st = kv_eval(d->kv, script, nkeys, keys, n, args, &r, err);
    if (st != CP_OK)
        return st;
    if (r->type != KV_REPLY_INTEGER)
        st = refuse(err, CP_ERR_MALFORMED, "a script answered no integer");
    else if (out != NULL)
        *out = r->integer;
    kv_reply_free(r);
    return st;
}

static cp_status redis_int(dispatch *d, long long *out, cp_error *err, const char *cmd,
                           const char *key, const char *member)
{
    kv_reply *r = NULL;
    cp_status st;

    if (member != NULL)
        st = kv_commandv(d->kv, &r, err, cmd, key, member, (char *)NULL);
    else
        st = kv_commandv(d->kv, &r, err, cmd, key, (char *)NULL);
    if (st != CP_OK)
        return st;
    *out = 0;
    if (r->type == KV_REPLY_INTEGER)
        *out = r->integer;
    else if (r->type == KV_REPLY_STRING)
        *out = strtoll(r->str, NULL, 10);
    kv_reply_free(r);
    return CP_OK;
}

/*
 * Something was written to SQL but Redis could not follow: dropping the
 * epoch makes the next tick rebuild every key from SQL. When Redis is away
 * even for that, every tick of this process tries again until it is back.
 */
static void mark_stale(dispatch *d)
{
    char key[KV_KEY_MAX];

    atomic_store(&d->stale, true);
    if (key_of(d, key, sizeof key, "epoch") == CP_OK &&
        kv_commandv(d->kv, NULL, NULL, "DEL", key, (char *)NULL) == CP_OK)
        atomic_store(&d->stale, false);
}

/* A timer for set_order: kind and due time. */
typedef struct timer_spec {
    const char *kind;
    int64_t due;
} timer_spec;

/* The Redis copy of o: its state, holder and timers, from SQL. */
static cp_status set_order(dispatch *d, const order *o, bool force, const timer_spec *timers,
                           size_t ntimers, cp_error *err)
{
    const char *args[ARGS_MAX];
    numbuf nb = { .used = 0 };
    char pat[33];
    size_t n = 0;
    int st_code = (int)o->state;

    if (!order_state_open(o->state) || o->state == ORDER_SUBMITTED)
        st_code = 0;
    patient_key(o, pat);
    args[n++] = d->prefix;
    args[n++] = num(&nb, o->id);
    args[n++] = num(&nb, st_code);
    args[n++] = num(&nb, o->version);
    args[n++] = o->modality;
    args[n++] = o->body_part;
    args[n++] = num(&nb, o->requesting_id);
    args[n++] = pat;
    args[n++] = num(&nb, (int64_t)o->weight);
    args[n++] = num(&nb, o->deadline_us);
    args[n++] = num(&nb, o->doctor_id);
    args[n++] = force ? "1" : "0";
    args[n++] = num(&nb, (int64_t)prio_index(o));
    for (size_t i = 0; i < ntimers && n + 2 <= ARGS_MAX; i++) {
        if (timers[i].due <= 0)
            continue;
        args[n++] = timers[i].kind;
        args[n++] = num(&nb, timers[i].due);
    }
    return eval_int(d, set_script, 0, NULL, n, args, NULL, err);
}

/* --- doctors: who may read what ------------------------------------------- */

static void doc_free(doc_info *di)
{
    if (di == NULL)
        return;
    cp_free(di->quals);
    cp_free(di->grants);
    cp_free(di);
}

typedef struct contract_acc {
    directory_contract *items;
    size_t count;
    size_t cap;
} contract_acc;

static cp_status collect_contract(void *ctx, const directory_contract *c)
{
    contract_acc *a = ctx;
    cp_status st;

    st = cp_array_grow(&a->items, &a->cap, a->count, sizeof *a->items, 8, 1024);
    if (st == CP_OK)
        a->items[a->count++] = *c;
    return st;
}

static void today(const dispatch *d, char out[9])
{
    time_t t = (time_t)(now_us(d) / US_PER_S);
    struct tm tm;

    if (localtime_r(&t, &tm) == NULL || strftime(out, 9, "%Y%m%d", &tm) != 8)
        snprintf(out, 9, "00000000");
}

/* The institutions a doctor's active contracts open, with their reading side. */
static cp_status doc_grants(dispatch *d, doc_info *di, cp_error *err)
{
    contract_acc acc = { 0 };
    size_t cap = 0;
    char day[9];
    cp_status st;

    st = directory_contract_list(d->dir, di->id, 0, collect_contract, &acc, err);
    today(d, day);
    for (size_t i = 0; st == CP_OK && i < acc.count; i++) {
        const directory_contract *c = &acc.items[i];
        int64_t *ids = NULL;
        size_t n = 0;

        if (c->revoked || (c->start_date[0] != '\0' && strcmp(c->start_date, day) > 0) ||
            (c->end_date[0] != '\0' && strcmp(day, c->end_date) > 0))
            continue;
        st = directory_institution_subtree(d->dir, c->requesting_id, &ids, &n, err);
        for (size_t j = 0; st == CP_OK && j < n; j++) {
            st = cp_array_grow(&di->grants, &cap, di->grant_count, sizeof *di->grants, 8,
                               4096);
            if (st != CP_OK)
                break;
            di->grants[di->grant_count].institution_id = ids[j];
            di->grants[di->grant_count].reading_id = c->reading_id;
            snprintf(di->grants[di->grant_count].modalities,
                     sizeof di->grants[0].modalities, "%s", c->modalities);
            di->grant_count++;
        }
        cp_free(ids);
    }
    cp_free(acc.items);
    return st;
}

static cp_status doc_fetch(dispatch *d, int64_t id, doc_info **out, cp_error *err)
{
    directory_user u;
    doc_info *di;
    cp_status st;

    *out = NULL;
    st = directory_user_get(d->dir, id, &u, err);
    if (st != CP_OK)
        return st;
    di = cp_calloc(1, sizeof *di);
    if (di == NULL)
        return CP_ERR_NOMEM;
    di->id = id;
    di->roles = u.roles;
    di->disabled = u.disabled;
    di->institution_id = u.institution_id;
    di->fetched_ms = mono_ms();
    st = directory_qualifications_get(d->dir, id, &di->quals, &di->qual_count, err);
    if (st == CP_OK)
        st = doc_grants(d, di, err);
    if (st != CP_OK) {
        doc_free(di);
        return st;
    }
    *out = di;
    return CP_OK;
}

/* Finds a fresh entry; d->lock held. */
static doc_info *cache_find(dispatch *d, int64_t id)
{
    int64_t now = mono_ms();

    for (size_t i = 0; i < d->cache_count; i++)
        if (d->cache[i]->id == id)
            return now - d->cache[i]->fetched_ms < DISPATCH_DOCTOR_CACHE_S * 1000
                       ? d->cache[i] : NULL;
    return NULL;
}

/* Puts di in the cache (replacing an older entry); d->lock held. Takes di. */
static void cache_put(dispatch *d, doc_info *di)
{
    size_t i;

    for (i = 0; i < d->cache_count; i++)
        if (d->cache[i]->id == di->id) {
            doc_free(d->cache[i]);
            d->cache[i] = di;
            return;
        }
    if (d->cache_count >= DISPATCH_DOCTOR_CACHE_MAX) {
        for (i = 0; i < d->cache_count; i++)
            doc_free(d->cache[i]);
        d->cache_count = 0;
    }
    if (cp_array_grow(&d->cache, &d->cache_cap, d->cache_count, sizeof *d->cache, 16,
                      DISPATCH_DOCTOR_CACHE_MAX) != CP_OK) {
        doc_free(di);
        return;
    }
    d->cache[d->cache_count++] = di;
}

/* What eligibility asks of a doctor, answered from the cache under d->lock. */
typedef struct doc_check {
    bool known;
    unsigned roles;
    bool disabled;
    int64_t institution_id;
    bool qualified;
    bool contracted;                    /* a grant covers the institution and modality */
    int64_t reading_id;
} doc_check;

static bool item_listed(const char *list, const char *item)
{
    size_t n = strlen(item);
    const char *p = list;

    if (list[0] == '\0')
        return true;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == n && strncasecmp(p, item, n) == 0)
            return true;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return false;
}

/*
 * A qualification matches when its modality and body part each are "*" or
 * equal; an order without a body part needs "*" there, since nothing says
 * which part it shows.
 */
static bool qual_match(const directory_qualification *q, const char *mod, const char *bp)
{
    bool m = strcmp(q->modality, "*") == 0 || strcasecmp(q->modality, mod) == 0;
    bool b = strcmp(q->body_part, "*") == 0 ||
             (bp[0] != '\0' && strcasecmp(q->body_part, bp) == 0);

    return m && b;
}

static cp_status doc_check_get(dispatch *d, int64_t id, const char *mod, const char *bp,
                               int64_t requesting, doc_check *out, cp_error *err)
{
    doc_info *di, *fresh = NULL;
    cp_status st = CP_OK;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&d->lock);
    di = cache_find(d, id);
    pthread_mutex_unlock(&d->lock);
    if (di == NULL) {
        st = doc_fetch(d, id, &fresh, err);
        if (st == CP_ERR_NOT_FOUND) {
            cp_error_clear(err);
            return CP_OK;
        }
        if (st != CP_OK)
            return st;
    }

    pthread_mutex_lock(&d->lock);
    if (fresh != NULL)
        cache_put(d, fresh);
    di = cache_find(d, id);
    if (di != NULL) {
        out->known = true;
        out->roles = di->roles;
        out->disabled = di->disabled;
        out->institution_id = di->institution_id;
        for (size_t i = 0; i < di->qual_count && !out->qualified; i++)
            out->qualified = qual_match(&di->quals[i], mod, bp);
        for (size_t i = 0; i < di->grant_count && !out->contracted; i++) {
            if (di->grants[i].institution_id != requesting ||
                !item_listed(di->grants[i].modalities, mod))
                continue;
            out->contracted = true;
            out->reading_id = di->grants[i].reading_id;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return CP_OK;
}

#define READER_ROLES ((unsigned)(ROLE_RADIOLOGIST | ROLE_REVIEWER))

/* Eligibility of a signed-in doctor: role, qualification, contract (policy). */
static bool principal_eligible(dispatch *d, const principal *p, const char *mod,
                               const char *bp, int64_t requesting, int64_t *reading_id)
{
    doc_check c;

    if (p == NULL || p->kind != PRINCIPAL_USER || p->enrol_only ||
        (p->roles & READER_ROLES) == 0 || (p->roles & ROLE_SEPARATED) != 0)
        return false;
    if (!policy_study_visible(p, requesting, mod))
        return false;
    if (doc_check_get(d, p->id, mod, bp, requesting, &c, NULL) != CP_OK || !c.known ||
        c.disabled || !c.qualified)
        return false;
    if (reading_id != NULL)
        *reading_id = c.contracted ? c.reading_id : p->institution_id;
    return true;
}

/* Eligibility of a doctor known by id only (fallback, assign, affinity). */
static bool id_eligible(dispatch *d, int64_t id, const order *o, int64_t *reading_id)
{
    doc_check c;

    if (doc_check_get(d, id, o->modality, o->body_part, o->requesting_id, &c, NULL) != CP_OK)
        return false;
    if (!c.known || c.disabled || (c.roles & READER_ROLES) == 0 || !c.qualified ||
        !c.contracted)
        return false;
    if (reading_id != NULL)
        *reading_id = c.reading_id;
    return true;
}

bool dispatch_eligible(dispatch *d, const principal *doctor, const order *o)
{
    if (d == NULL || o == NULL)
        return false;
    return principal_eligible(d, doctor, o->modality, o->body_part, o->requesting_id, NULL);
}

/* --- creating ------------------------------------------------------------- */

static void copy_config(dispatch *d, const dispatch_config *cfg)
{
    d->kv = cfg->kv;
    d->orders = cfg->orders;
    d->dir = cfg->dir;
    d->rules = cfg->rules;
    d->now_us = cfg->now_us;
    d->on_event = cfg->on_event;
    d->event_ctx = cfg->event_ctx;
    d->lease_ms = cfg->lease_ms != 0 ? cfg->lease_ms : DISPATCH_LEASE_MS;
    if (cfg->instance_id != NULL) {
        snprintf(d->instance, sizeof d->instance, "%s", cfg->instance_id);
    } else {
        char host[64] = "";

        gethostname(host, sizeof host - 1);
        snprintf(d->instance, sizeof d->instance, "%s:%ld", host, (long)getpid());
    }
}

cp_status dispatch_create(const dispatch_config *cfg, dispatch **out, cp_error *err)
{
    dispatch *d;
    char base[KV_KEY_MAX];
    pthread_condattr_t ca;

    if (cfg == NULL || out == NULL || cfg->kv == NULL || cfg->orders == NULL ||
        cfg->dir == NULL)
        return refuse(err, CP_ERR_INVALID, "kv, orders and directory are needed");
    *out = NULL;
    if (sodium_init() < 0)
        return refuse(err, CP_ERR_UNAVAILABLE, "libsodium could not start");
    if (kv_key(cfg->kv, base, sizeof base - 2, "disp", NULL) != CP_OK)
        return refuse(err, CP_ERR_LIMIT, "key prefix too long");

    d = cp_calloc(1, sizeof *d);
    if (d == NULL)
        return refuse(err, CP_ERR_NOMEM, "engine");
    copy_config(d, cfg);
    memcpy(d->prefix, base, strlen(base));
    d->prefix[strlen(base)] = ':';
    if (d->rules.visible_max == 0)
        d->rules.visible_max = 1;

    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->run_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->run_cond, &ca);
    pthread_condattr_destroy(&ca);

    /* Histories are written in the engine's time. */
    if (cfg->now_us != NULL)
        order_store_set_clock(cfg->orders, cfg->now_us);
    *out = d;
    return CP_OK;
}

void dispatch_destroy(dispatch *d)
{
    char key[KV_KEY_MAX];

    if (d == NULL)
        return;
    dispatch_stop(d);
    if (atomic_load(&d->leader) && key_of(d, key, sizeof key, "leader") == CP_OK) {
        const char *keys[1] = { key };
        const char *args[1] = { d->instance };

        eval_int(d, unlease_script, 1, keys, 1, args, NULL, NULL);
    }
    for (size_t i = 0; i < d->cache_count; i++)
        doc_free(d->cache[i]);
    cp_free(d->cache);
    pthread_cond_destroy(&d->run_cond);
    pthread_mutex_destroy(&d->run_lock);
    pthread_mutex_destroy(&d->lock);
    cp_free(d);
}

/* --- moving orders -------------------------------------------------------- */

/* The order's alert time: alert_percent of the way from pooled to deadline. */
static int64_t alert_due(const dispatch *d, const order *o)
{
    if (d->rules.alert_percent == 0 || d->rules.alert_percent >= 100)
        return 0;
    return o->pooled_us + (o->deadline_us - o->pooled_us) * d->rules.alert_percent / 100;
}

static cp_status rebuild_one(dispatch *d, order *o, cp_error *err);

/*
 * Rewrites the Redis copy of one order from SQL, timers recomputed: the
 * undo of a script that SQL refused. When even that fails, the next tick
 * rebuilds everything.
 */
static void resync(dispatch *d, int64_t id)
{
    order o;
    cp_status st;

    if (order_get(d->orders, id, &o, NULL) != CP_OK || o.state == ORDER_SUBMITTED)
        return;
    if (!order_state_open(o.state))
        st = set_order(d, &o, true, NULL, 0, NULL);
    else
        st = rebuild_one(d, &o, NULL);
    if (st != CP_OK)
        mark_stale(d);
}

/* The state and version of an order's Redis copy. */
typedef struct copy_fields {
    bool present;
    int state;
    int64_t version;
    unsigned prio;
} copy_fields;

/*
 * Claims a pooled order for a doctor: the grab script, then SQL. Used by
 * grab (force false), affinity and fallback (force: past the cap).
 * *result gets the grab result; on DISPATCH_GRABBED *o is the claimed order.
 */
static cp_status claim(dispatch *d, int64_t id, int64_t version, unsigned prio,
                       int64_t doctor, int64_t reading_id, bool force, const char *event,
                       int64_t actor, dispatch_grab_result *result, order *o, cp_error *err)
{
    const char *args[9];
    numbuf nb = { .used = 0 };
    int64_t now = now_us(d);
    long long rc = 1;
    cp_status st;

    *result = DISPATCH_GONE;
    args[0] = d->prefix;
    args[1] = num(&nb, id);
    args[2] = num(&nb, version);
    args[3] = num(&nb, doctor);
    args[4] = num(&nb, d->rules.cap_units);
    args[5] = num(&nb, now);
    args[6] = force ? "1" : "0";
    args[7] = num(&nb, version + 1);
    args[8] = num(&nb, now + (int64_t)d->rules.open_s[prio != 0] * US_PER_S);
    st = eval_int(d, grab_script, 0, NULL, 9, args, &rc, err);
    if (st != CP_OK)
        return st;
    if (rc == 2 || rc == 3) {
        *result = rc == 2 ? DISPATCH_OVER_CAP : DISPATCH_NOT_ELIGIBLE;
        return CP_OK;
    }
    if (rc != 0)
        return CP_OK;

    /* Redis says this doctor won (losers never touch SQL); SQL must agree. */
    st = order_get(d->orders, id, o, err);
    if (st == CP_OK && (o->state != ORDER_POOLED || o->version != version))
        st = CP_ERR_AGAIN;
    if (st == CP_OK) {
        o->state = ORDER_CLAIMED;
        o->doctor_id = doctor;
        o->reading_id = reading_id;
        o->claimed_us = now;
        o->opened_us = 0;
        st = order_transition(d->orders, o, ORDER_POOLED, event, actor, "", err);
    }
    if (st != CP_OK) {
        resync(d, id);
        if (st == CP_ERR_AGAIN || st == CP_ERR_NOT_FOUND) {
            cp_error_clear(err);
            return CP_OK;
        }
        return st;
    }
    *result = DISPATCH_GRABBED;
    emit_move(d, o, ORDER_POOLED, event, doctor);
    return CP_OK;
}

typedef struct order_acc {
    order *items;
    size_t count;
    size_t cap;
} order_acc;

static cp_status collect_order(void *ctx, const order *o)
{
    order_acc *a = ctx;
    cp_status st;

    st = cp_array_grow(&a->items, &a->cap, a->count, sizeof *a->items, 4,
                       DISPATCH_REBUILD_PAGE);
    if (st == CP_OK)
        a->items[a->count++] = *o;
    return st;
}

/*
 * Affinity: the other pooled orders of the patient of `o` go to the
 * doctor who just claimed it, when they may read them, past the cap if
 * need be. Best effort: an order someone else took meanwhile stays theirs.
 */
static void affinity_sweep(dispatch *d, const principal *p, int64_t doctor, const order *o)
{
    order_state pooled = ORDER_POOLED;
    order_filter f;
    order_acc acc = { 0 };

    if (o->patient_id[0] == '\0')
        return;
    memset(&f, 0, sizeof f);
    f.states = &pooled;
    f.state_count = 1;
    f.patient_id = o->patient_id;
    f.limit = 64;
    if (order_list(d->orders, &f, collect_order, &acc, NULL) != CP_OK)
        goto done;

    for (size_t i = 0; i < acc.count; i++) {
        const order *other = &acc.items[i];
        dispatch_grab_result res;
        int64_t reading = 0;
        order got;
        bool ok;

        if (other->id == o->id || !same_patient(other, o))
            continue;
        ok = p != NULL ? principal_eligible(d, p, other->modality, other->body_part,
                                            other->requesting_id, &reading)
                       : id_eligible(d, doctor, other, &reading);
        if (!ok)
            continue;
        claim(d, other->id, other->version, prio_index(other), doctor, reading, true,
              "affinity", 0, &res, &got, NULL);
    }

done:
    cp_free(acc.items);
}

/* The doctor now holding this patient's unread orders, or 0. */
static int64_t affinity_holder(dispatch *d, const order *o)
{
    char pat[33], suffix[48], key[KV_KEY_MAX];
    long long doc = 0;

    patient_key(o, pat);
    if (pat[0] == '\0')
        return 0;
    snprintf(suffix, sizeof suffix, "patient:%s", pat);
    if (key_of(d, key, sizeof key, suffix) != CP_OK ||
        redis_int(d, &doc, NULL, "GET", key, NULL) != CP_OK)
        return 0;
    return (int64_t)doc;
}

static int64_t read_us(const dispatch *d, long long units);
static int64_t latest_start(const dispatch *d, const order *o, int64_t ahead_us);

/*
 * Whether the doctor holding the patient's other orders can still read o
 * in time after what they hold: otherwise o goes to the pool, where a
 * free doctor takes it sooner.
 */
static bool holder_in_time(dispatch *d, int64_t holder, const order *o)
{
    char suffix[48], key[KV_KEY_MAX];
    long long units = 0;

    snprintf(suffix, sizeof suffix, "load:%lld", (long long)holder);
    if (key_of(d, key, sizeof key, suffix) != CP_OK ||
        redis_int(d, &units, NULL, "GET", key, NULL) != CP_OK)
        return true;
    return units == 0 || now_us(d) <= latest_start(d, o, read_us(d, units));
}

cp_status dispatch_submit(dispatch *d, order *o, cp_error *err)
{
    int64_t now, holder, reading = 0;
    order_state from;
    const char *event;
    timer_spec timers[2];
    cp_status st;

    if (d == NULL || o == NULL)
        return CP_ERR_INVALID;
    now = now_us(d);
    o->weight = dispatch_weight(&d->rules, o->modality);
    o->created_us = now;
    o->pooled_us = now;
    o->deadline_us = now + (int64_t)deadline_for(&d->rules, o->priority, o->modality) *
                               US_PER_S;
    o->doctor_id = 0;
    o->reading_id = 0;
    st = order_create(d->orders, o, o->requested_by, err);
    if (st != CP_OK)
        return st;
    emit(d, DISPATCH_EVENT_STATUS, o, "submitted", 0);

    /* Where it goes: the patient's doctor, the wanted doctor, or the pool. */
    from = o->state;
    holder = affinity_holder(d, o);
    timers[1].kind = "alert";
    timers[1].due = alert_due(d, o);
    if (holder > 0 && id_eligible(d, holder, o, &reading) && holder_in_time(d, holder, o)) {
        o->state = ORDER_CLAIMED;
        o->doctor_id = holder;
        o->reading_id = reading;
        o->claimed_us = now;
        event = "affinity";
        timers[0].kind = "open";
        timers[0].due = now + (int64_t)d->rules.open_s[prio_index(o)] * US_PER_S;
    } else if (o->wanted_doctor_id > 0 && id_eligible(d, o->wanted_doctor_id, o, NULL)) {
        o->state = ORDER_OFFERED;
        o->doctor_id = o->wanted_doctor_id;
        event = "offered";
        timers[0].kind = "ack";
        timers[0].due = now + (int64_t)d->rules.ack_s * US_PER_S;
    } else {
        o->state = ORDER_POOLED;
        event = "pooled";
        timers[0].kind = "grab";
        timers[0].due = now + (int64_t)d->rules.grab_window_s[prio_index(o)] * US_PER_S;
    }
    st = order_transition(d->orders, o, from, event, 0, "", err);
    if (st != CP_OK)
        return st;

    if (set_order(d, o, false, timers, 2, NULL) != CP_OK)
        mark_stale(d);
    emit_move(d, o, from, event, o->doctor_id);
    return CP_OK;
}

/* --- presence and duty ---------------------------------------------------- */

static bool is_reader(const principal *p)
{
    return p != NULL && p->kind == PRINCIPAL_USER && !p->enrol_only &&
           (p->roles & READER_ROLES) != 0;
}

static cp_status zset_put(dispatch *d, const char *name, int64_t member, int64_t score,
                          cp_error *err)
{
    char key[KV_KEY_MAX];
    numbuf nb = { .used = 0 };
    cp_status st = key_of(d, key, sizeof key, name);

    if (st != CP_OK)
        return refuse(err, st, "key too long");
    if (score <= 0)
        return kv_commandv(d->kv, NULL, err, "ZREM", key, num(&nb, member), (char *)NULL);
    return kv_commandv(d->kv, NULL, err, "ZADD", key, num(&nb, score), num(&nb, member),
                       (char *)NULL);
}

cp_status dispatch_heartbeat(dispatch *d, const principal *doctor, cp_error *err)
{
    if (d == NULL)
        return CP_ERR_INVALID;
    if (!is_reader(doctor))
        return refuse(err, CP_ERR_FORBIDDEN, "only readers are dispatched to");
    return zset_put(d, "online", doctor->id,
                    now_us(d) + (int64_t)d->rules.presence_s * US_PER_S, err);
}

cp_status dispatch_offline(dispatch *d, int64_t doctor_id, cp_error *err)
{
    if (d == NULL)
        return CP_ERR_INVALID;
    return zset_put(d, "online", doctor_id, 0, err);
}

cp_status dispatch_set_duty(dispatch *d, int64_t doctor_id, int64_t until_us, cp_error *err)
{
    if (d == NULL || doctor_id <= 0)
        return CP_ERR_INVALID;
    return zset_put(d, "duty", doctor_id, until_us, err);
}

cp_status dispatch_duty_list(dispatch *d, dispatch_duty_fn fn, void *ctx, cp_error *err)
{
    char key[KV_KEY_MAX];
    numbuf nb = { .used = 0 };
    kv_reply *r = NULL;
    cp_status st;

    if (d == NULL || fn == NULL)
        return CP_ERR_INVALID;
    st = key_of(d, key, sizeof key, "duty");
    if (st != CP_OK)
        return refuse(err, st, "key too long");
    /* Ended duties stay in the set until set again: only those still running. */
    st = kv_commandv(d->kv, &r, err, "ZRANGEBYSCORE", key, num(&nb, now_us(d)), "+inf",
                     "WITHSCORES", (char *)NULL);
    if (st != CP_OK)
        return st;
    for (size_t i = 0; st == CP_OK && r->type == KV_REPLY_ARRAY && i + 1 < r->count; i += 2)
        if (r->elements[i]->type == KV_REPLY_STRING &&
            r->elements[i + 1]->type == KV_REPLY_STRING)
            st = fn(ctx, strtoll(r->elements[i]->str, NULL, 10),
                    strtoll(r->elements[i + 1]->str, NULL, 10));
    kv_reply_free(r);
    return st == CP_ERR_STOPPED ? CP_OK : st;
}

cp_status dispatch_offer_expires(dispatch *d, int64_t order_id, int64_t *due_us, cp_error *err)
{
    char key[KV_KEY_MAX], member[48];
    kv_reply *r = NULL;
    cp_status st;

    *due_us = 0;
    if (d == NULL)
        return CP_ERR_INVALID;
    st = key_of(d, key, sizeof key, "timers");
    if (st != CP_OK)
        return refuse(err, st, "key too long");
    snprintf(member, sizeof member, "ack:%lld", (long long)order_id);
    st = kv_commandv(d->kv, &r, err, "ZSCORE", key, member, (char *)NULL);
    if (st == CP_OK && r->type == KV_REPLY_STRING)
        *due_us = strtoll(r->str, NULL, 10);
    kv_reply_free(r);
    return st;
}

/* --- the pool as a doctor sees it ----------------------------------------- */

static const char *elem(const kv_reply *r, size_t i)
{
    if (i >= r->count || r->elements[i]->type != KV_REPLY_STRING)
        return "";
    return r->elements[i]->str;
}

/* Looks at one page of the pool; adds what the doctor may take to out. */
static cp_status visible_page(dispatch *d, const principal *doctor, size_t start,
                              order *out, size_t want, size_t *count, bool *more,
                              cp_error *err)
{
    const char *args[5];
    numbuf nb = { .used = 0 };
    kv_reply *r = NULL;
    size_t entries;
    long long load;
    cp_status st;

    args[0] = d->prefix;
    args[1] = num(&nb, (int64_t)start);
    args[2] = num(&nb, (int64_t)(start + DISPATCH_POOL_PAGE - 1));
    args[3] = num(&nb, doctor->id);
    args[4] = num(&nb, now_us(d));
    st = kv_eval(d->kv, page_script, 0, NULL, 5, args, &r, err);
    if (st != CP_OK)
        return st;
    if (r->type != KV_REPLY_ARRAY || r->count % 7 != 1) {
        kv_reply_free(r);
        return refuse(err, CP_ERR_MALFORMED, "pool page");
    }
    entries = r->count / 7;
    *more = entries == DISPATCH_POOL_PAGE;
    load = strtoll(elem(r, r->count - 1), NULL, 10);

    for (size_t i = 0; i < entries && *count < want && st == CP_OK; i++) {
        const size_t b = i * 7;
        int64_t id = strtoll(elem(r, b), NULL, 10);
        int64_t ver = strtoll(elem(r, b + 1), NULL, 10);
        long long w = strtoll(elem(r, b + 5), NULL, 10);
        order *o = &out[*count];

        if (strcmp(elem(r, b + 6), "1") == 0)
            continue;
        if (load > 0 && load + w > (long long)d->rules.cap_units)
            continue;
        if (!principal_eligible(d, doctor, elem(r, b + 2), elem(r, b + 3),
                                strtoll(elem(r, b + 4), NULL, 10), NULL))
            continue;
        st = order_get(d->orders, id, o, err);
        if (st == CP_ERR_NOT_FOUND) {
            cp_error_clear(err);
            st = CP_OK;
            continue;
        }
        if (st == CP_OK && o->state == ORDER_POOLED && o->version == ver)
            (*count)++;
    }
    kv_reply_free(r);
    return st;
}

cp_status dispatch_visible(dispatch *d, const principal *doctor, order *out, size_t cap,
                           size_t *count, cp_error *err)
{
    size_t want, start = 0;
    bool more = true;
    cp_status st = CP_OK;

    if (d == NULL || count == NULL || (cap > 0 && out == NULL))
        return CP_ERR_INVALID;
    *count = 0;
    if (!is_reader(doctor))
        return CP_OK;
    want = cap < d->rules.visible_max ? cap : d->rules.visible_max;
    while (st == CP_OK && more && *count < want) {
        st = visible_page(d, doctor, start, out, want, count, &more, err);
        start += DISPATCH_POOL_PAGE;
    }
    return st;
}

/* --- grab, open, give back ------------------------------------------------ */

cp_status dispatch_grab(dispatch *d, const principal *doctor, int64_t order_id,
                        dispatch_grab_result *result, order *order_out, cp_error *err)
{
    copy_fields cf;
    order o;
    int64_t reading = 0;
    char suffix[40], key[KV_KEY_MAX];
    kv_reply *r = NULL;
    bool ok;
    cp_status st;

    if (d == NULL || result == NULL)
        return CP_ERR_INVALID;
    *result = DISPATCH_NOT_ELIGIBLE;
    if (!is_reader(doctor))
        return CP_OK;

    /* What eligibility needs comes from the Redis copy: no SQL for losers. */
    snprintf(suffix, sizeof suffix, "ord:%lld", (long long)order_id);
    st = key_of(d, key, sizeof key, suffix);
    if (st == CP_OK)
        st = kv_commandv(d->kv, &r, err, "HMGET", key, "st", "ver", "mod", "bp", "req", "pr",
                         (char *)NULL);
    if (st != CP_OK)
        return st;
    memset(&cf, 0, sizeof cf);
    if (r->type == KV_REPLY_ARRAY && r->count == 6 && r->elements[0]->type == KV_REPLY_STRING) {
        cf.state = atoi(elem(r, 0));
        cf.version = strtoll(elem(r, 1), NULL, 10);
        cf.prio = strcmp(elem(r, 5), "1") == 0 ? 1u : 0u;
        cf.present = true;
    }
    if (!cf.present || cf.state != ORDER_POOLED) {
        kv_reply_free(r);
        *result = DISPATCH_GONE;
        return CP_OK;
    }
    ok = principal_eligible(d, doctor, elem(r, 2), elem(r, 3), strtoll(elem(r, 4), NULL, 10),
                            &reading);
    kv_reply_free(r);
    if (!ok)
        return CP_OK;

    st = claim(d, order_id, cf.version, cf.prio, doctor->id, reading, false, "grabbed",
               doctor->id, result, &o, err);
    if (st != CP_OK || *result != DISPATCH_GRABBED)
        return st;
    if (order_out != NULL)
        *order_out = o;
    affinity_sweep(d, doctor, doctor->id, &o);
    return CP_OK;
}

typedef struct event_find {
    const char *name;
    order_state to;                     /* 0: any */
    int64_t since;
    int64_t time;                       /* the last match, 0 if none */
    int64_t actor;
} event_find;

static cp_status find_event(void *ctx, const order_event *e)
{
    event_find *f = ctx;

    if (e->time_us < f->since)
        return CP_OK;
    if ((f->name == NULL || strcmp(e->event, f->name) == 0) && (f->to == 0 || e->to == f->to)) {
        f->time = e->time_us;
        f->actor = e->actor_id;
    }
    return CP_OK;
}

/* When the last event named `name` (or moving to `to`) since `since` was; 0 none. */
static int64_t last_event(dispatch *d, int64_t id, const char *name, order_state to,
                          int64_t since)
{
    event_find f = { .name = name, .to = to, .since = since, .time = 0, .actor = 0 };

    if (order_history(d->orders, id, find_event, &f, NULL) != CP_OK)
        return 0;
    return f.time;
}

/* When the current claim was opened (the field, else its "opened" note); 0 not yet. */
static int64_t opened_at(dispatch *d, const order *o)
{
    if (o->opened_us != 0)
        return o->opened_us;
    return last_event(d, o->id, "opened", 0, o->claimed_us);
}

cp_status dispatch_open(dispatch *d, const principal *doctor, int64_t order_id, cp_error *err)
{
    const char *args[4];
    numbuf nb = { .used = 0 };
    order o;
    long long rc = 0;
    cp_status st;

    if (d == NULL || doctor == NULL)
        return CP_ERR_INVALID;
    st = order_get(d->orders, order_id, &o, err);
    if (st != CP_OK)
        return st;
    if (o.state != ORDER_CLAIMED || o.doctor_id != doctor->id)
        return refuse(err, CP_ERR_FORBIDDEN, "the order is not held by this doctor");
    if (opened_at(d, &o) != 0)
        return CP_OK;

    /* A state-less change: the history notes it, the report lease starts. */
    st = order_note(d->orders, order_id, "opened", doctor->id, "", err);
    if (st != CP_OK)
        return st;
    args[0] = d->prefix;
    args[1] = num(&nb, order_id);
    args[2] = num(&nb, doctor->id);
    args[3] = num(&nb, now_us(d) + (int64_t)d->rules.report_s[prio_index(&o)] * US_PER_S);
    if (eval_int(d, open_script, 0, NULL, 4, args, &rc, NULL) != CP_OK)
        mark_stale(d);
    emit(d, DISPATCH_EVENT_STATUS, &o, "opened", doctor->id);
    return CP_OK;
}

/*
 * Sends a claimed or offered order back to the pool with its age: the
 * return script, then SQL. `doctor` is cooled down for cooldown_s.
 */
static cp_status back_to_pool(dispatch *d, order *o, const char *event, int64_t actor,
                              const char *reason, cp_error *err)
{
    const char *args[8];
    numbuf nb = { .used = 0 };
    order_state from = o->state;
    int64_t now = now_us(d), doctor = o->doctor_id;
    long long rc = 1;
    cp_status st;

    args[0] = d->prefix;
    args[1] = num(&nb, o->id);
    args[2] = num(&nb, (int64_t)from);
    args[3] = num(&nb, o->version);
    args[4] = num(&nb, doctor);
    args[5] = num(&nb, o->version + 1);
    args[6] = num(&nb, d->rules.cooldown_s > 0
                           ? now + (int64_t)d->rules.cooldown_s * US_PER_S : 0);
    args[7] = num(&nb, now + (int64_t)d->rules.grab_window_s[prio_index(o)] * US_PER_S);
    st = eval_int(d, return_script, 0, NULL, 8, args, &rc, err);
    if (st != CP_OK)
        return st;
    if (rc != 0)
        return refuse(err, CP_ERR_AGAIN, "the order moved meanwhile");

    o->state = ORDER_POOLED;
    o->doctor_id = 0;
    o->reading_id = 0;
    o->claimed_us = 0;
    o->opened_us = 0;
    if (from == ORDER_CLAIMED)
        o->returns++;
    st = order_transition(d->orders, o, from, event, actor, reason, err);
    if (st != CP_OK) {
        resync(d, o->id);
        return st;
    }
    emit_move(d, o, from, event, doctor);
    return CP_OK;
}

cp_status dispatch_give_back(dispatch *d, const principal *doctor, int64_t order_id,
                             const char *reason, cp_error *err)
{
    order o;
    cp_status st;

    if (d == NULL || doctor == NULL)
        return CP_ERR_INVALID;
    if (reason == NULL || reason[0] == '\0')
        return refuse(err, CP_ERR_INVALID, "a reason is required to give an order back");
    st = order_get(d->orders, order_id, &o, err);
    if (st != CP_OK)
        return st;
    if (o.state != ORDER_CLAIMED || o.doctor_id != doctor->id)
        return refuse(err, CP_ERR_FORBIDDEN, "the order is not held by this doctor");
    return back_to_pool(d, &o, "given_back", doctor->id, reason, err);
}

/* --- assign and answer ---------------------------------------------------- */

cp_status dispatch_assign(dispatch *d, const principal *admin, int64_t order_id,
                          int64_t doctor_id, cp_error *err)
{
    const char *args[6];
    numbuf nb = { .used = 0 };
    doc_check c;
    order o;
    long long rc = 1;
    order_state from = ORDER_POOLED;
    cp_status st;

    if (d == NULL || admin == NULL)
        return CP_ERR_INVALID;
    st = order_get(d->orders, order_id, &o, err);
    if (st != CP_OK)
        return st;
    st = doc_check_get(d, doctor_id, o.modality, o.body_part, o.requesting_id, &c, err);
    if (st != CP_OK)
        return st;
    if (!(admin->kind == PRINCIPAL_SERVICE && !admin->enrol_only) &&
        !((admin->roles & ROLE_INSTITUTION_ADMIN) && c.known &&
          policy_manages_institution(admin, c.institution_id)))
        return refuse(err, CP_ERR_FORBIDDEN, "only the doctor's institution admin assigns");
    if (!id_eligible(d, doctor_id, &o, NULL))
        return refuse(err, CP_ERR_FORBIDDEN, "the doctor may not read this order");
    if (o.state != ORDER_POOLED)
        return refuse(err, CP_ERR_AGAIN, "the order is not in the pool");

    args[0] = d->prefix;
    args[1] = num(&nb, order_id);
    args[2] = num(&nb, o.version);
    args[3] = num(&nb, doctor_id);
    args[4] = num(&nb, o.version + 1);
    args[5] = num(&nb, now_us(d) + (int64_t)d->rules.ack_s * US_PER_S);
    st = eval_int(d, offer_script, 0, NULL, 6, args, &rc, err);
    if (st != CP_OK)
        return st;
    if (rc != 0)
        return refuse(err, CP_ERR_AGAIN, "the order left the pool meanwhile");

    o.state = ORDER_OFFERED;
    o.doctor_id = doctor_id;
    st = order_transition(d->orders, &o, from, "offered", admin->id, "", err);
    if (st != CP_OK) {
        resync(d, order_id);
        return st;
    }
    emit_move(d, &o, from, "offered", doctor_id);
    return CP_OK;
}

cp_status dispatch_answer(dispatch *d, const principal *doctor, int64_t order_id, bool accept,
                          const char *reason, cp_error *err)
{
    const char *args[6];
    numbuf nb = { .used = 0 };
    int64_t now, reading = 0;
    order o;
    long long rc = 1;
    cp_status st;

    if (d == NULL || doctor == NULL)
        return CP_ERR_INVALID;
    st = order_get(d->orders, order_id, &o, err);
    if (st != CP_OK)
        return st;
    if (o.state != ORDER_OFFERED || o.doctor_id != doctor->id)
        return refuse(err, CP_ERR_FORBIDDEN, "the order is not offered to this doctor");
    if (!accept)
        return back_to_pool(d, &o, "declined", doctor->id,
                            reason != NULL && reason[0] != '\0' ? reason : "declined", err);
    if (!principal_eligible(d, doctor, o.modality, o.body_part, o.requesting_id, &reading))
        return refuse(err, CP_ERR_FORBIDDEN, "the doctor may not read this order");

    now = now_us(d);
    args[0] = d->prefix;
    args[1] = num(&nb, order_id);
    args[2] = num(&nb, o.version);
    args[3] = num(&nb, doctor->id);
    args[4] = num(&nb, o.version + 1);
    args[5] = num(&nb, now + (int64_t)d->rules.open_s[prio_index(&o)] * US_PER_S);
    st = eval_int(d, accept_script, 0, NULL, 6, args, &rc, err);
    if (st != CP_OK)
        return st;
    if (rc != 0)
        return refuse(err, CP_ERR_AGAIN, "the offer moved meanwhile");

    o.state = ORDER_CLAIMED;
    o.reading_id = reading;
    o.claimed_us = now;
    o.opened_us = 0;
    st = order_transition(d->orders, &o, ORDER_OFFERED, "accepted", doctor->id, "", err);
    if (st != CP_OK) {
        resync(d, order_id);
        return st;
    }
    emit_move(d, &o, ORDER_OFFERED, "accepted", doctor->id);
    return CP_OK;
}

/* --- cancel and the report workflow --------------------------------------- */

/* Whether p speaks for the requesting institution (its own subtree). */
static bool speaks_for(const principal *p, int64_t institution_id)
{
    size_t own;

    if (p->kind == PRINCIPAL_SERVICE && !p->enrol_only)
        return true;
    if (p->enrol_only || p->institution_id <= 0)
        return false;
    if (p->institution_id == institution_id)
        return true;
    if (p->kind == PRINCIPAL_USER &&
        (p->roles & (ROLE_TECHNICIAN | ROLE_INSTITUTION_ADMIN)) == 0)
        return false;
    own = p->own_grant_count > 0 ? p->own_grant_count : p->grant_count;
    for (size_t i = 0; i < own && i < p->grant_count && p->grants != NULL; i++)
        if (p->grants[i].institution_id == institution_id && p->grants[i].modalities[0] == '\0')
            return true;
    return false;
}

cp_status dispatch_cancel(dispatch *d, const principal *requester, int64_t order_id,
                          const char *reason, cp_error *err)
{
    order o;
    cp_status st = CP_ERR_AGAIN;

    if (d == NULL || requester == NULL)
        return CP_ERR_INVALID;

    /* SQL first: a grab racing this loses at its own SQL step and undoes. */
    for (int attempt = 0; attempt < 3 && st == CP_ERR_AGAIN; attempt++) {
        order_state from;

        cp_error_clear(err);
        st = order_get(d->orders, order_id, &o, err);
        if (st != CP_OK)
            return st;
        if (!speaks_for(requester, o.requesting_id))
            return refuse(err, CP_ERR_FORBIDDEN, "only the requesting institution cancels");
        from = o.state;
        if (from != ORDER_SUBMITTED && from != ORDER_POOLED && from != ORDER_OFFERED)
            return refuse(err, CP_ERR_INVALID, "the order has been taken");
        o.state = ORDER_CANCELLED;
        st = order_transition(d->orders, &o, from, "cancelled", requester->id, reason, err);
        if (st == CP_OK) {
            if (set_order(d, &o, true, NULL, 0, NULL) != CP_OK)
                mark_stale(d);
            emit(d, DISPATCH_EVENT_TAKEN, &o, "cancelled", 0);
            emit(d, DISPATCH_EVENT_STATUS, &o, "cancelled", 0);
        }
    }
    return st;
}

/*
 * When the doctor's last report went in (disp:done:<doctor>, a day): their
 * next read began then at the earliest (work_before). Only a hint, not
 * rebuilt after a Redis loss, so a failure is ignored.
 */
static void note_done(dispatch *d, int64_t doctor, int64_t now)
{
    char suffix[48], key[KV_KEY_MAX];
    numbuf nb = { .used = 0 };

    snprintf(suffix, sizeof suffix, "done:%lld", (long long)doctor);
    if (key_of(d, key, sizeof key, suffix) == CP_OK)
        (void)kv_commandv(d->kv, NULL, NULL, "SET", key, num(&nb, now), "EX", "86400",
                          (char *)NULL);
}

cp_status dispatch_after_report(dispatch *d, const order *o, cp_error *err)
{
    timer_spec t[2] = { { "rep", 0 }, { "alert", 0 } };
    int64_t now;
    cp_status st;

    if (d == NULL || o == NULL)
        return CP_ERR_INVALID;
    now = now_us(d);

    /*
     * Returned: the author holds it again, under a fresh report lease, and
     * the deadline alert is due again unless it has been given.
     */
    if (o->state == ORDER_RETURNED) {
        t[0].due = now + (int64_t)d->rules.report_s[prio_index(o)] * US_PER_S;
        if (last_event(d, o->id, "deadline_near", 0, 0) == 0)
            t[1].due = alert_due(d, o);
    }
    st = set_order(d, o, false, t, o->state == ORDER_RETURNED ? 2 : 0, err);
    if (st != CP_OK) {
        mark_stale(d);
        return st;
    }
    if (o->state == ORDER_REPORTED && o->doctor_id != 0)
        note_done(d, o->doctor_id, now);
    emit(d, DISPATCH_EVENT_STATUS, o, order_state_name(o->state), o->doctor_id);
    return CP_OK;
}

/* --- timers --------------------------------------------------------------- */

static cp_status timer_add(dispatch *d, const char *kind, int64_t id, int64_t due)
{
    char key[KV_KEY_MAX], member[48];
    numbuf nb = { .used = 0 };
    cp_status st = key_of(d, key, sizeof key, "timers");

    snprintf(member, sizeof member, "%s:%lld", kind, (long long)id);
    if (st == CP_OK)
        st = kv_commandv(d->kv, NULL, NULL, "ZADD", key, num(&nb, due), member, (char *)NULL);
    return st;
}

/* A doctor fit to be given an order, with their load. */
typedef struct candidate {
    int64_t id;
    int64_t reading_id;
    long long units;
    long long claims;
    int64_t ahead_us;                   /* work before the order, estimated (PICK_ONLINE) */
} candidate;

static bool candidate_better(const candidate *a, const candidate *b)
{
    if (a->units != b->units)
        return a->units < b->units;
    if (a->claims != b->claims)
        return a->claims < b->claims;
    return a->id < b->id;
}

/* Whether member is online now. */
static cp_status is_online(dispatch *d, const char *online, const char *member, bool *on,
                           cp_error *err)
{
    kv_reply *s = NULL;
    cp_status st;

    st = kv_commandv(d->kv, &s, err, "ZSCORE", online, member, (char *)NULL);
    if (st != CP_OK)
        return st;
    *on = s->type == KV_REPLY_STRING && strtod(s->str, NULL) > (double)now_us(d);
    kv_reply_free(s);
    return CP_OK;
}

/* The least a read under way is taken still to need: it may run over. */
#define READ_LEFT_MIN_S 60

/* The expected time of reading units weight units, in µs. */
static int64_t read_us(const dispatch *d, long long units)
{
    return (int64_t)units * (int64_t)d->rules.unit_read_s * US_PER_S;
}

/* Whether the doctor reads held before o: by priority, then deadline (their list). */
static bool read_before(const order *held, const order *o)
{
    if (held->priority != o->priority)
        return held->priority > o->priority;
    return held->deadline_us <= o->deadline_us;
}

/*
 * The doctor's work before o, in µs, into *out: the rest of the read under
 * way and the expected reads of the claims they take up before o. The read
 * under way is the claim opened first (claims are opened as they arrive and
 * read one at a time); it began when it was opened, or when the doctor's
 * last report went in if that was later, and is taken to need at least
 * READ_LEFT_MIN_S more.
 */
static cp_status work_before(dispatch *d, int64_t doctor, const order *o, int64_t *out,
                             cp_error *err)
{
    char suffix[48], key[KV_KEY_MAX];
    kv_reply *r = NULL;
    long long done = 0;
    int64_t now = now_us(d), queued = 0, cur_opened = 0;
    order cur = { .id = 0 };
    cp_status st;

    snprintf(suffix, sizeof suffix, "claims:%lld", (long long)doctor);
    if (key_of(d, key, sizeof key, suffix) != CP_OK)
        return refuse(err, CP_ERR_LIMIT, "key too long");
    st = kv_commandv(d->kv, &r, err, "SMEMBERS", key, (char *)NULL);
    if (st != CP_OK)
        return st;
    snprintf(suffix, sizeof suffix, "done:%lld", (long long)doctor);
    if (key_of(d, key, sizeof key, suffix) != CP_OK ||
        redis_int(d, &done, NULL, "GET", key, NULL) != CP_OK)
        done = 0;

    for (size_t i = 0; r->type == KV_REPLY_ARRAY && i < r->count; i++) {
        order h;
        int64_t opened;

        if (order_get(d->orders, strtoll(elem(r, i), NULL, 10), &h, NULL) != CP_OK ||
            h.id == o->id || h.state != ORDER_CLAIMED)
            continue;
        opened = opened_at(d, &h);
        if (opened != 0 && (cur_opened == 0 || opened < cur_opened)) {
            if (cur_opened != 0 && read_before(&cur, o))
                queued += read_us(d, (long long)cur.weight);
            cur_opened = opened;
            cur = h;
        } else if (read_before(&h, o)) {
            queued += read_us(d, (long long)h.weight);
        }
    }
    kv_reply_free(r);
    if (cur_opened != 0) {
        int64_t began = (int64_t)done > cur_opened ? (int64_t)done : cur_opened;
        int64_t left = read_us(d, (long long)cur.weight) - (now > began ? now - began : 0);

        queued += left > READ_LEFT_MIN_S * US_PER_S ? left : READ_LEFT_MIN_S * US_PER_S;
    }
    *out = queued;
    return CP_OK;
}

/* Which doctors pick_candidates lists. */
typedef enum pick_mode {
    PICK_ROOM,                          /* online, with room for o under the cap */
    PICK_ONLINE,                        /* online, whatever they hold */
    PICK_DUTY,                          /* on the fallback roster and online */
} pick_mode;

/*
 * Doctors who may read o, least loaded first, into *out (cp_free) as mode
 * says; a doctor holding nothing always has room.
 */
static cp_status pick_candidates(dispatch *d, const order *o, pick_mode mode,
                                 candidate **out, size_t *count, cp_error *err)
{
    char duty[KV_KEY_MAX], online[KV_KEY_MAX];
    numbuf nb = { .used = 0 };
    kv_reply *r = NULL;
    size_t cap = 0, n = 0;
    long long weight = (long long)o->weight;
    bool from_duty = mode == PICK_DUTY;
    cp_status st;

    *out = NULL;
    *count = 0;
    if (key_of(d, duty, sizeof duty, "duty") != CP_OK ||
        key_of(d, online, sizeof online, "online") != CP_OK)
        return refuse(err, CP_ERR_LIMIT, "key too long");
    st = kv_commandv(d->kv, &r, err, "ZRANGEBYSCORE", from_duty ? duty : online,
                     num(&nb, now_us(d) + 1), "+inf", (char *)NULL);
    if (st != CP_OK)
        return st;

    for (size_t i = 0; st == CP_OK && r->type == KV_REPLY_ARRAY && i < r->count; i++) {
        candidate c = { .id = strtoll(elem(r, i), NULL, 10) };
        char suffix[48], key[KV_KEY_MAX];
        long long units = 0;
        bool on = true;
        size_t at;

        if (from_duty)
            st = is_online(d, online, elem(r, i), &on, err);
        if (st != CP_OK)
            break;
        if (!on || !id_eligible(d, c.id, o, &c.reading_id))
            continue;
        snprintf(suffix, sizeof suffix, "load:%lld", (long long)c.id);
        if (key_of(d, key, sizeof key, suffix) == CP_OK)
            st = redis_int(d, &units, err, "GET", key, NULL);
        c.units = units;
        if (st == CP_OK && mode == PICK_ROOM && units > 0 &&
            units + weight > (long long)d->rules.cap_units)
            continue;
        snprintf(suffix, sizeof suffix, "claims:%lld", (long long)c.id);
        if (st == CP_OK && key_of(d, key, sizeof key, suffix) == CP_OK)
            st = redis_int(d, &c.claims, err, "SCARD", key, NULL);
        c.ahead_us = read_us(d, c.units);
        if (st == CP_OK && mode == PICK_ONLINE && c.claims > 0)
            st = work_before(d, c.id, o, &c.ahead_us, err);
        if (st == CP_OK)
            st = cp_array_grow(out, &cap, n, sizeof **out, 4, 1024);
        if (st != CP_OK)
            break;

        /* Insertion keeps the list sorted: the doctors online are few. */
        at = n;
        while (at > 0 && candidate_better(&c, &(*out)[at - 1])) {
            (*out)[at] = (*out)[at - 1];
            at--;
        }
        (*out)[at] = c;
        n++;
    }
    kv_reply_free(r);
    if (st != CP_OK) {
        cp_free(*out);
        *out = NULL;
        return st;
    }
    *count = n;
    return CP_OK;
}

/*
 * Gives o to the first of cands (n of them) that takes it, past the cap
 * when force: *done when one did (or the order left the pool meanwhile).
 */
static cp_status give_to(dispatch *d, order *o, const candidate *cands, size_t n, bool force,
                         const char *event, bool *done, unsigned *fired, cp_error *err)
{
    cp_status st = CP_OK;

    *done = false;
    for (size_t i = 0; st == CP_OK && i < n && !*done; i++) {
        dispatch_grab_result res = DISPATCH_GONE;
        order got;

        st = claim(d, o->id, o->version, prio_index(o), cands[i].id, cands[i].reading_id,
                   force, event, 0, &res, &got, err);
        if (st == CP_OK && res == DISPATCH_GONE)
            *done = true;
        if (st == CP_OK && res == DISPATCH_GRABBED) {
            (*fired)++;
            affinity_sweep(d, NULL, cands[i].id, &got);
            *done = true;
        }
    }
    return st;
}

/*
 * When o must be handed to a doctor with ahead_us of work before it so
 * that it is still read in time: its deadline less the margin, that work
 * and its own read.
 */
static int64_t latest_start(const dispatch *d, const order *o, int64_t ahead_us)
{
    return o->deadline_us - (int64_t)d->rules.margin_s * US_PER_S - ahead_us -
           read_us(d, (long long)o->weight);
}

/* Whether candidate a would begin reading the order before b (idle first). */
static bool sooner(const candidate *a, const candidate *b)
{
    if ((a->units == 0) != (b->units == 0))
        return a->units == 0;
    if (a->ahead_us != b->ahead_us)
        return a->ahead_us < b->ahead_us;
    return candidate_better(a, b);
}

/* The candidate that would begin reading o first (the least work before it). */
static size_t soonest(const candidate *c, size_t n)
{
    size_t best = 0;

    for (size_t i = 1; i < n; i++)
        if (sooner(&c[i], &c[best]))
            best = i;
    return best;
}

/*
 * The grab window closed (or its retry came). In this order:
 *   - a doctor online and idle takes it (auto_assigned): nothing waits;
 *   - the one doctor online who may read it takes it when it has room;
 *   - else, of the doctors with room holding at most one order (the one
 *     being read), the one whose read ends first (work_before) takes it as
 *     their next, so that it is opened while they finish and they need not
 *     come back to the pool;
 *   - at fallback_percent of the way to the deadline, the on-duty reader
 *     with the least load takes it past the cap (fallback), unless an
 *     online doctor holds less;
 *   - once its latest start (latest_start, for the least-loaded doctor
 *     online) has come, the doctor expected to begin it first (idle, else
 *     the least work before it by work_before) takes it past the cap
 *     (deadline_assigned): it is read next but for more urgent claims.
 * Otherwise it stays in the pool, where doctors take the earliest deadline
 * first as they become free: handing it to a doctor with a queue would
 * make it wait behind that queue while another may be free sooner. The
 * timer comes back at the next point that may change the answer.
 */
static cp_status fire_grab(dispatch *d, order *o, unsigned *fired, cp_error *err)
{
    int64_t now = now_us(d), fallback_at, start_at, retry_at;
    candidate *online = NULL, *duty = NULL;
    size_t n = 0, nduty = 0, first;
    long long least;
    bool done = false, room = false;
    cp_status st;

    st = pick_candidates(d, o, PICK_ONLINE, &online, &n, err);
    if (st != CP_OK)
        return st;
    fallback_at = o->pooled_us + (o->deadline_us - o->pooled_us) *
                                     (int64_t)d->rules.fallback_percent / 100;
    least = n > 0 ? online[0].units : 0;
    first = n > 0 ? soonest(online, n) : 0;
    start_at = n > 0 ? latest_start(d, o, read_us(d, least)) : INT64_MAX;
    room = n > 0 && (online[0].units == 0 ||
                     online[0].units + (long long)o->weight <= (long long)d->rules.cap_units);

    if (n > 0 && online[0].units == 0)
        st = give_to(d, o, online, 1, false, "auto_assigned", &done, fired, err);
    else if (n == 1 && online[0].units + (long long)o->weight <= (long long)d->rules.cap_units)
        st = give_to(d, o, online, 1, false, "auto_assigned", &done, fired, err);
    else {
        /* Soonest first: the one whose read under way ends first. */
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && sooner(&online[j], &online[j - 1]); j--) {
                candidate t = online[j];

                online[j] = online[j - 1];
                online[j - 1] = t;
            }
        first = 0;
        for (size_t i = 0; i < n && !done && st == CP_OK; i++)
            if (online[i].claims <= 1 &&
                online[i].units + (long long)o->weight <= (long long)d->rules.cap_units)
                st = give_to(d, o, &online[i], 1, false, "auto_assigned", &done, fired, err);
    }
    if (st == CP_OK && !done && now >= fallback_at) {
        st = pick_candidates(d, o, PICK_DUTY, &duty, &nduty, err);
        if (st == CP_OK && nduty > 0 && (n == 0 || duty[0].units <= least))
            st = give_to(d, o, duty, 1, true, "fallback", &done, fired, err);
    }
    if (st == CP_OK && !done && now >= start_at)
        st = give_to(d, o, &online[first], 1, true, "deadline_assigned", &done, fired, err);
    cp_free(online);
    cp_free(duty);
    if (st != CP_OK || done)
        return st;

    /* Nobody online may read it, or has room for it: the centre should know. */
    if (!room) {
        emit(d, DISPATCH_EVENT_ALERT, o, "unassigned", 0);
        (*fired)++;
    }
    retry_at = now + DISPATCH_FALLBACK_RETRY_S * US_PER_S;
    if (fallback_at > now && fallback_at < retry_at)
        retry_at = fallback_at;
    if (start_at > now && start_at < retry_at)
        retry_at = start_at;
    return timer_add(d, "grab", o->id, retry_at);
}

static cp_status fire_report(dispatch *d, order *o, bool second, unsigned *fired,
                             cp_error *err)
{
    int64_t now = now_us(d);
    cp_status st;

    if (o->state != ORDER_CLAIMED && o->state != ORDER_RETURNED)
        return CP_OK;
    if (o->state == ORDER_CLAIMED && opened_at(d, o) == 0)
        return CP_OK;
    (*fired)++;

    /* A second lapse of a first claim sends it back; a returned one stays. */
    if (second && o->state == ORDER_CLAIMED)
        return back_to_pool(d, o, "lapsed", 0, "not reported in time", err);
    st = order_note(d->orders, o->id, "escalated", 0, "not reported in time", err);
    if (st != CP_OK)
        return st;
    emit(d, DISPATCH_EVENT_ALERT, o, "escalated", o->doctor_id);
    return timer_add(d, "rep2", o->id, now + (int64_t)d->rules.report_s[prio_index(o)] *
                                               US_PER_S);
}

/* One due timer, "<kind>:<id>", checked against the order as SQL has it. */
static cp_status fire(dispatch *d, const char *member, unsigned *fired, cp_error *err)
{
    const char *colon = strchr(member, ':');
    int64_t id;
    order o;
    cp_status st;

    if (colon == NULL)
        return CP_OK;
    id = strtoll(colon + 1, NULL, 10);
    st = order_get(d->orders, id, &o, err);
    if (st == CP_ERR_NOT_FOUND) {
        cp_error_clear(err);
        return CP_OK;
    }
    if (st != CP_OK)
        return st;

#define KIND(k) (strncmp(member, k ":", sizeof k) == 0)
    if (KIND("open")) {
        if (o.state != ORDER_CLAIMED || opened_at(d, &o) != 0)
            return CP_OK;
        (*fired)++;
        return back_to_pool(d, &o, "lapsed", 0, "not opened in time", err);
    }
    if (KIND("ack")) {
        if (o.state != ORDER_OFFERED)
            return CP_OK;
        (*fired)++;
        return back_to_pool(d, &o, "declined", 0, "no answer", err);
    }
    if (KIND("grab"))
        return o.state == ORDER_POOLED ? fire_grab(d, &o, fired, err) : CP_OK;
    if (KIND("rep"))
        return fire_report(d, &o, false, fired, err);
    if (KIND("rep2"))
        return fire_report(d, &o, true, fired, err);
    if (KIND("alert")) {
        if (o.state != ORDER_POOLED && o.state != ORDER_OFFERED &&
            o.state != ORDER_CLAIMED && o.state != ORDER_RETURNED)
            return CP_OK;
        if (last_event(d, o.id, "deadline_near", 0, 0) != 0)
            return CP_OK;
        (*fired)++;
        st = order_note(d->orders, o.id, "deadline_near", 0, "", err);
        if (st == CP_OK)
            emit(d, DISPATCH_EVENT_ALERT, &o, "deadline_near", o.doctor_id);
        return st;
    }
#undef KIND
    return CP_OK;
}

/* --- the lease, the tick, the rebuild ------------------------------------- */

static cp_status lease(dispatch *d, bool *held, cp_error *err)
{
    char key[KV_KEY_MAX];
    numbuf nb = { .used = 0 };
    const char *keys[1] = { key };
    const char *args[2];
    long long rc = 0;
    int64_t t0 = mono_ms();
    cp_status st;

    st = key_of(d, key, sizeof key, "leader");
    if (st != CP_OK)
        return refuse(err, st, "key too long");
    args[0] = d->instance;
    args[1] = num(&nb, d->lease_ms);
    st = eval_int(d, lease_script, 1, keys, 2, args, &rc, err);

    *held = st == CP_OK && rc == 1;
    if (*held)
        atomic_store(&d->leader_ms, t0);
    atomic_store(&d->leader, *held);
    return st;
}

bool dispatch_is_leader(const dispatch *d)
{
    if (d == NULL)
        return false;
    return atomic_load(&d->leader) &&
           mono_ms() - atomic_load(&d->leader_ms) < (int64_t)d->lease_ms;
}

cp_status dispatch_tick(dispatch *d, unsigned *fired, cp_error *err)
{
    char key[KV_KEY_MAX];
    numbuf nb = { .used = 0 };
    const char *args[3];
    kv_reply *r = NULL;
    long long present = 0;
    unsigned count = 0;
    bool held = false;
    cp_status st;

    if (fired != NULL)
        *fired = 0;
    if (d == NULL)
        return CP_ERR_INVALID;
    if (atomic_load(&d->stale))
        mark_stale(d);
    st = lease(d, &held, err);
    if (st != CP_OK || !held)
        return st;

    st = key_of(d, key, sizeof key, "epoch");
    if (st == CP_OK)
        st = redis_int(d, &present, err, "EXISTS", key, NULL);
    if (st == CP_OK && present == 0)
        st = dispatch_rebuild(d, err);
    if (st != CP_OK)
        return st;

    args[0] = d->prefix;
    args[1] = num(&nb, now_us(d));
    args[2] = num(&nb, DISPATCH_TIMERS_PER_TICK);
    st = kv_eval(d->kv, pop_script, 0, NULL, 3, args, &r, err);
    if (st != CP_OK)
        return st;

    /*
     * A timer that fails to fire is not put back as it was: the order's
     * copy is rewritten from SQL with its timers recomputed (it may have
     * moved meanwhile), and when SQL or Redis is away the next tick
     * rebuilds everything.
     */
    for (size_t i = 0; r->type == KV_REPLY_ARRAY && i < r->count; i++) {
        const char *member = elem(r, i), *colon = strchr(member, ':');
        cp_error one;

        cp_error_clear(&one);
        if (fire(d, member, &count, &one) == CP_OK)
            continue;
        if (one.status == CP_ERR_AGAIN && colon != NULL)
            resync(d, strtoll(colon + 1, NULL, 10));
        else
            mark_stale(d);
    }
    kv_reply_free(r);
    if (fired != NULL)
        *fired = count;
    return CP_OK;
}

/* The timers an open order has, recomputed from its times and history. */
static size_t rebuild_timers(dispatch *d, const order *o, timer_spec *t)
{
    size_t n = 0;
    int64_t since, opened, esc;
    unsigned p = prio_index(o);

    if (o->state == ORDER_REPORTED || o->state == ORDER_APPROVED)
        return 0;
    if (last_event(d, o->id, "deadline_near", 0, 0) == 0) {
        t[n].kind = "alert";
        t[n++].due = alert_due(d, o);
    }
    switch (o->state) {
    case ORDER_POOLED:
        since = last_event(d, o->id, NULL, ORDER_POOLED, 0);
        t[n].kind = "grab";
        t[n++].due = (since != 0 ? since : o->pooled_us) +
                     (int64_t)d->rules.grab_window_s[p] * US_PER_S;
        break;
    case ORDER_OFFERED:
        since = last_event(d, o->id, NULL, ORDER_OFFERED, 0);
        t[n].kind = "ack";
        t[n++].due = (since != 0 ? since : o->pooled_us) + (int64_t)d->rules.ack_s * US_PER_S;
        break;
    case ORDER_CLAIMED:
        opened = opened_at(d, o);
        esc = last_event(d, o->id, "escalated", 0, o->claimed_us);
        if (opened == 0) {
            t[n].kind = "open";
            t[n++].due = o->claimed_us + (int64_t)d->rules.open_s[p] * US_PER_S;
        } else {
            t[n].kind = esc != 0 ? "rep2" : "rep";
            t[n++].due = (esc != 0 ? esc : opened) + (int64_t)d->rules.report_s[p] * US_PER_S;
        }
        break;
    case ORDER_RETURNED:
        since = last_event(d, o->id, NULL, ORDER_RETURNED, 0);
        esc = last_event(d, o->id, "escalated", 0, since);
        t[n].kind = esc != 0 ? "rep2" : "rep";
        t[n++].due = (esc != 0 ? esc : since) + (int64_t)d->rules.report_s[p] * US_PER_S;
        break;
    default:
        break;
    }
    return n;
}

/*
 * Cool-downs the doctors' own returns and declines left; those of lapses
 * and unanswered offers (the engine's doing) are not rebuilt.
 */
static cp_status rebuild_exclusions(dispatch *d, const order *o, cp_error *err);

static cp_status rebuild_one(dispatch *d, order *o, cp_error *err)
{
    timer_spec t[3];
    size_t n;
    cp_status st;

    /* A crash between creation and pooling left it submitted: pool it now. */
    if (o->state == ORDER_SUBMITTED) {
        o->state = ORDER_POOLED;
        st = order_transition(d->orders, o, ORDER_SUBMITTED, "pooled", 0, "rebuild", err);
        if (st != CP_OK)
            return st;
    }
    n = rebuild_timers(d, o, t);
    st = set_order(d, o, true, t, n, err);
    if (st == CP_OK && d->rules.cooldown_s > 0)
        st = rebuild_exclusions(d, o, err);
    return st;
}

typedef struct excl_acc {
    int64_t since;
    int64_t doctors[16];
    int64_t until[16];
    size_t n;
    int64_t cooldown_us;
} excl_acc;

static cp_status collect_exclusion(void *ctx, const order_event *e)
{
    excl_acc *a = ctx;

    if (e->time_us < a->since || e->actor_id <= 0 || e->to != ORDER_POOLED)
        return CP_OK;
    if (strcmp(e->event, "given_back") != 0 && strcmp(e->event, "declined") != 0)
        return CP_OK;
    if (a->n < 16) {
        a->doctors[a->n] = e->actor_id;
        a->until[a->n++] = e->time_us + a->cooldown_us;
    }
    return CP_OK;
}

static cp_status rebuild_exclusions(dispatch *d, const order *o, cp_error *err)
{
    excl_acc a = { 0 };
    char key[KV_KEY_MAX], suffix[40], field[40];
    numbuf nb = { .used = 0 };
    cp_status st;

    a.cooldown_us = (int64_t)d->rules.cooldown_s * US_PER_S;
    a.since = now_us(d) - a.cooldown_us;
    st = order_history(d->orders, o->id, collect_exclusion, &a, err);
    snprintf(suffix, sizeof suffix, "ord:%lld", (long long)o->id);
    if (st == CP_OK)
        st = key_of(d, key, sizeof key, suffix);
    for (size_t i = 0; st == CP_OK && i < a.n; i++) {
        snprintf(field, sizeof field, "x:%lld", (long long)a.doctors[i]);
        st = kv_commandv(d->kv, NULL, err, "HSET", key, field, num(&nb, a.until[i]),
                         (char *)NULL);
    }
    return st;
}

cp_status dispatch_rebuild(dispatch *d, cp_error *err)
{
    static const order_state open_states[] = {
        ORDER_SUBMITTED, ORDER_POOLED, ORDER_OFFERED, ORDER_CLAIMED, ORDER_REPORTED,
        ORDER_RETURNED, ORDER_APPROVED,
    };
    const char *args[1];
    char key[KV_KEY_MAX];
    numbuf nb = { .used = 0 };
    order_filter f;
    int64_t after = 0;
    cp_status st;

    if (d == NULL)
        return CP_ERR_INVALID;
    args[0] = d->prefix;
    st = eval_int(d, clear_script, 0, NULL, 1, args, NULL, err);

    memset(&f, 0, sizeof f);
    f.states = open_states;
    f.state_count = sizeof open_states / sizeof open_states[0];
    f.limit = DISPATCH_REBUILD_PAGE;
    while (st == CP_OK) {
        order_acc acc = { 0 };

        f.after_id = after;
        st = order_list(d->orders, &f, collect_order, &acc, err);
        for (size_t i = 0; st == CP_OK && i < acc.count; i++) {
            after = acc.items[i].id;
            st = rebuild_one(d, &acc.items[i], err);
        }
        cp_free(acc.items);
        if (acc.count < DISPATCH_REBUILD_PAGE)
            break;
    }

    if (st == CP_OK)
        st = key_of(d, key, sizeof key, "epoch");
    if (st == CP_OK)
        st = kv_commandv(d->kv, NULL, err, "SET", key, num(&nb, now_us(d)), (char *)NULL);
    return st;
}

/* --- the tick thread ------------------------------------------------------ */

static void *tick_main(void *arg)
{
    dispatch *d = arg;

    pthread_mutex_lock(&d->run_lock);
    while (!d->stopping) {
        struct timespec until;

        pthread_mutex_unlock(&d->run_lock);
        dispatch_tick(d, NULL, NULL);
        pthread_mutex_lock(&d->run_lock);

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 1;
        while (!d->stopping &&
               pthread_cond_timedwait(&d->run_cond, &d->run_lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&d->run_lock);
    return NULL;
}

cp_status dispatch_start(dispatch *d, cp_error *err)
{
    cp_status st = CP_OK;

    if (d == NULL)
        return CP_ERR_INVALID;
    pthread_mutex_lock(&d->run_lock);
    if (!d->running) {
        d->stopping = false;
        if (pthread_create(&d->thread, NULL, tick_main, d) != 0)
            st = refuse(err, CP_ERR_NOMEM, "cannot start the timer thread");
        else
            d->running = true;
    }
    pthread_mutex_unlock(&d->run_lock);
    return st;
}

void dispatch_stop(dispatch *d)
{
    bool join;

    if (d == NULL)
        return;
    pthread_mutex_lock(&d->run_lock);
    join = d->running;
    d->stopping = true;
    pthread_cond_broadcast(&d->run_cond);
    pthread_mutex_unlock(&d->run_lock);
    if (join)
        pthread_join(d->thread, NULL);
    pthread_mutex_lock(&d->run_lock);
    d->running = false;
    pthread_mutex_unlock(&d->run_lock);
}
