/*
 * events.c - the live view of remote reading (events.h): changes published
 * to a Redis stream and fanned out, per process, to the server-sent event
 * streams (WHATWG HTML, "Server-sent events") of those who should see them.
 *
 * Subscribers live in a list under the hub's lock. A stream that ends
 * (client gone, dropped, server stopping) only marks its subscriber dead
 * from the http layer's thread; the reader thread or a new subscription
 * sweeps the dead ones out, since a close callback may not release its own
 * stream. The hub must be destroyed after the web server stopped, so that
 * no close callback runs any more.
 */
#include "consult/events.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"

typedef struct events_sub {
    struct events_sub *next;
    principal *p;
    http_events *ev;
    bool centre_admin;                  /* an institution admin of a reading centre */
    bool doctor;
    bool failed;                        /* a send failed: the stream is ending */
    bool dead;                          /* the stream's close callback has run */
} events_sub;

struct events_hub {
    events_config cfg;
    dispatch *disp;
    pthread_mutex_t lock;
    events_sub *subs;
    unsigned count;
    pthread_t thread;
    bool started;
    volatile bool stop;
    char stream_key[KV_KEY_MAX];
    char last_id[64];                   /* the reader's own position */
    char sent_id[64];                   /* the last entry fanned out; under lock */
    bool lost;                          /* a publish failed: a resync entry is owed */
};

static const char *const kind_names[] = {
    [DISPATCH_EVENT_POOLED] = "pooled", [DISPATCH_EVENT_TAKEN] = "taken",
    [DISPATCH_EVENT_STATUS] = "status", [DISPATCH_EVENT_OFFER] = "offer",
    [DISPATCH_EVENT_ALERT] = "alert",
};

/*
 * Not a change of an order: "reload what you show", for everybody. Put in
 * the stream once Redis takes writes again after a publish failed, and
 * sent alone when a replay cannot be complete.
 */
#define EVENTS_RESYNC "resync"
#define EVENTS_RESYNC_DATA "{\"kind\":\"resync\"}"

static int kind_parse(const char *name)
{
    for (int k = DISPATCH_EVENT_POOLED; k <= DISPATCH_EVENT_ALERT; k++)
        if (strcmp(kind_names[k], name) == 0)
            return k;
    return 0;
}

/* Whether text is a stream entry id ("<ms>-<seq>"); *ms and *seq get its parts. */
static bool id_parse(const char *text, unsigned long long *ms, unsigned long long *seq)
{
    char *end = NULL;

    if (text == NULL || *text < '0' || *text > '9' || strlen(text) >= 64)
        return false;
    *ms = strtoull(text, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    *seq = strtoull(end + 1, &end, 10);
    return *end == '\0';
}

/* Whether entry id a comes before b (both valid). */
static bool id_before(const char *a, const char *b)
{
    unsigned long long am, as, bm, bs;

    if (!id_parse(a, &am, &as) || !id_parse(b, &bm, &bs))
        return false;
    return am < bm || (am == bm && as < bs);
}

cp_status events_hub_create(const events_config *cfg, events_hub **out, cp_error *err)
{
    events_hub *h;

    *out = NULL;
    if (!cfg || !cfg->kv)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "events_hub_create: a kv is required");
    h = cp_calloc(1, sizeof(*h));
    if (!h)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "events_hub_create: out of memory");
    h->cfg = *cfg;
    if (kv_key(cfg->kv, h->stream_key, sizeof(h->stream_key), "disp:events", NULL) != CP_OK) {
        cp_free(h);
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "events_hub_create: the key prefix is too long");
    }
    pthread_mutex_init(&h->lock, NULL);
    snprintf(h->last_id, sizeof(h->last_id), "$");
    *out = h;
    return CP_OK;
}

static void sub_free(events_sub *s)
{
    http_events_release(s->ev);
    principal_free(s->p);
    cp_free(s);
}

/* With the lock held: drops the subscribers whose stream ended. */
static void sweep_locked(events_hub *h)
{
    events_sub **pp = &h->subs;

    while (*pp) {
        events_sub *s = *pp;

        /* Only after its close callback ran: nothing touches s after that. */
        if (__atomic_load_n(&s->dead, __ATOMIC_ACQUIRE)) {
            *pp = s->next;
            h->count--;
            sub_free(s);
        } else {
            pp = &s->next;
        }
    }
}

void events_hub_destroy(events_hub *h)
{
    if (!h)
        return;
    events_stop(h);
    pthread_mutex_lock(&h->lock);
    while (h->subs) {
        events_sub *s = h->subs;

        h->subs = s->next;
        sub_free(s);
    }
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_destroy(&h->lock);
    cp_free(h);
}

void events_hub_set_dispatch(events_hub *h, dispatch *d)
{
    pthread_mutex_lock(&h->lock);
    h->disp = d;
    pthread_mutex_unlock(&h->lock);
}

/* --- publishing --------------------------------------------------------------- */

static cp_status xadd(events_hub *h, const char *text, cp_error *err)
{
    char maxlen[24];

    snprintf(maxlen, sizeof(maxlen), "%d", EVENTS_STREAM_MAXLEN);
    return kv_commandv(h->cfg.kv, NULL, err, "XADD", h->stream_key, "MAXLEN", "~", maxlen, "*",
                       "j", text, (const char *)NULL);
}

/*
 * After a publish failed, live views missed a change: once the stream
 * takes writes again, a resync entry tells every stream of every process
 * to reload. Called before each publish and by the reader.
 */
static void owe_resync(events_hub *h)
{
    cp_error err;

    if (!__atomic_load_n(&h->lost, __ATOMIC_ACQUIRE))
        return;
    cp_error_clear(&err);
    if (xadd(h, EVENTS_RESYNC_DATA, &err) != CP_OK)
        return;
    __atomic_store_n(&h->lost, false, __ATOMIC_RELEASE);
    cp_log_info("consult.events_resync", "why=lost_events");
}

cp_status events_publish(events_hub *h, dispatch_event_kind kind, const order *o,
                         const char *event, int64_t doctor_id, cp_error *err)
{
    json_t *j;
    char *text;
    cp_status st;

    if (kind < DISPATCH_EVENT_POOLED || kind > DISPATCH_EVENT_ALERT || !o)
        return CP_ERR_INVALID;
    j = json_pack("{s:s, s:I, s:I, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:I}",
                  "kind", kind_names[kind], "order", (json_int_t)o->id,
                  "version", (json_int_t)o->version, "state", order_state_name(o->state),
                  "event", event ? event : "", "doctor", (json_int_t)doctor_id,
                  "requesting", (json_int_t)o->requesting_id, "modality", o->modality,
                  "body_part", o->body_part, "priority", order_priority_name(o->priority),
                  "deadline", (json_int_t)o->deadline_us);
    text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "events_publish: out of memory");
    owe_resync(h);
    st = xadd(h, text, err);
    free(text);
    if (st != CP_OK)
        __atomic_store_n(&h->lost, true, __ATOMIC_RELEASE);
    return st;
}

void events_on_dispatch(void *ctx, const dispatch_event *e)
{
    events_hub *h = ctx;
    cp_error err;

    cp_error_clear(&err);
    if (events_publish(h, e->kind, e->order, e->event, e->doctor_id, &err) != CP_OK)
        cp_log_warn("consult.event_lost", "order=%lld event=%s detail=\"%s\"",
                    e->order ? (long long)e->order->id : 0LL, e->event ? e->event : "-",
                    err.detail);
}

/* --- subscribing ------------------------------------------------------------- */

static void sub_closed(void *ctx)
{
    events_sub *s = ctx;

    /* Only marked: the stream may not be released from its own close. */
    __atomic_store_n(&s->dead, true, __ATOMIC_RELEASE);
}

static bool is_centre_admin(events_hub *h, const principal *p)
{
    directory_institution inst;
    cp_error err;

    if (p->kind == PRINCIPAL_SERVICE)
        return true;
    if (!(p->roles & ROLE_INSTITUTION_ADMIN) || !h->cfg.dir)
        return false;
    cp_error_clear(&err);
    return directory_institution_get(h->cfg.dir, p->institution_id, &inst, &err) == CP_OK &&
           inst.kind == DIRECTORY_CENTRE;
}

static void replay_locked(events_hub *h, events_sub *s, const char *after);

cp_status events_subscribe(events_hub *h, const principal *p, http_events *ev,
                           cp_error *err)
{
    return events_subscribe_from(h, p, ev, NULL, err);
}

cp_status events_subscribe_from(events_hub *h, const principal *p, http_events *ev,
                                const char *after, cp_error *err)
{
    unsigned long long ms, seq;
    events_sub *s;
    cp_status st;

    s = cp_calloc(1, sizeof(*s));
    if (!s) {
        http_events_release(ev);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "events_subscribe: out of memory");
    }
    s->ev = ev;
    st = principal_copy(p, &s->p);
    if (st != CP_OK) {
        sub_free(s);
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "events_subscribe: cannot copy the principal");
    }
    s->doctor = p->kind == PRINCIPAL_USER && (p->roles & (ROLE_RADIOLOGIST | ROLE_REVIEWER));
    s->centre_admin = is_centre_admin(h, p);

    pthread_mutex_lock(&h->lock);
    sweep_locked(h);
    if (h->count >= EVENTS_SUBSCRIBERS_MAX) {
        pthread_mutex_unlock(&h->lock);
        sub_free(s);
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "too many live event streams");
    }
    /* Under the lock, so that the reader's next entry comes after the replay. */
    if (after != NULL && id_parse(after, &ms, &seq))
        replay_locked(h, s, after);
    s->next = h->subs;
    h->subs = s;
    h->count++;
    http_events_on_close(ev, sub_closed, s);
    pthread_mutex_unlock(&h->lock);
    return CP_OK;
}

unsigned events_subscriber_count(events_hub *h)
{
    unsigned n;

    pthread_mutex_lock(&h->lock);
    sweep_locked(h);
    n = h->count;
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* --- fan-out ------------------------------------------------------------------ */

/* An entry's payload read back. */
typedef struct events_entry {
    int kind;
    order o;
    int64_t doctor;
} events_entry;

static bool entry_parse(const char *text, events_entry *e)
{
    json_t *j = json_loads(text, 0, NULL);
    const char *kind = NULL, *state = NULL, *mod = NULL, *part = NULL, *prio = NULL;
    json_int_t id = 0, version = 0, doctor = 0, requesting = 0, deadline = 0;
    bool ok;

    memset(e, 0, sizeof(*e));
    ok = j && json_unpack(j, "{s:s, s:I, s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:I}",
                          "kind", &kind, "order", &id, "version", &version, "state", &state,
                          "doctor", &doctor, "requesting", &requesting, "modality", &mod,
                          "body_part", &part, "priority", &prio, "deadline", &deadline) == 0;
    if (ok) {
        e->kind = kind_parse(kind);
        e->o.id = id;
        e->o.version = version;
        e->o.state = order_state_parse(state);
        e->o.requesting_id = requesting;
        e->o.deadline_us = deadline;
        e->o.priority = order_priority_parse(prio) == ORDER_URGENT ? ORDER_URGENT
                                                                   : ORDER_ROUTINE;
        e->o.doctor_id = doctor;
        snprintf(e->o.modality, sizeof(e->o.modality), "%s", mod);
        snprintf(e->o.body_part, sizeof(e->o.body_part), "%s", part);
        e->doctor = doctor;
        ok = e->kind != 0;
    }
    json_decref(j);
    return ok;
}

/* Whether subscriber s should get the entry (events.h). */
static bool sub_sees(events_hub *h, const events_sub *s, const events_entry *e)
{
    const principal *p = s->p;

    if (s->centre_admin)
        return e->kind == DISPATCH_EVENT_ALERT || e->kind == DISPATCH_EVENT_STATUS;
    if (s->doctor) {
        switch (e->kind) {
        case DISPATCH_EVENT_POOLED:
        case DISPATCH_EVENT_TAKEN:
            return h->disp && dispatch_eligible(h->disp, p, &e->o);
        case DISPATCH_EVENT_OFFER:
            return e->doctor == p->id;
        case DISPATCH_EVENT_STATUS:
            return e->doctor == p->id;
        default:
            return false;
        }
    }
    return e->kind == DISPATCH_EVENT_STATUS &&
           policy_study_visible(p, e->o.requesting_id, NULL);
}

/* Sends an entry to s if s should see it (e NULL: a resync, for everybody). */
static void deliver(events_hub *h, events_sub *s, const char *id, const char *text,
                    const events_entry *e)
{
    if (s->failed || (e != NULL && !sub_sees(h, s, e)))
        return;
    if (http_events_send(s->ev, e != NULL ? kind_names[e->kind] : EVENTS_RESYNC, text, id) !=
        CP_OK)
        s->failed = true;
}

static void fan_out(events_hub *h, const char *id, const char *text)
{
    bool resync = strcmp(text, EVENTS_RESYNC_DATA) == 0;
    events_entry e;
    bool ok = resync || entry_parse(text, &e);

    pthread_mutex_lock(&h->lock);
    snprintf(h->sent_id, sizeof(h->sent_id), "%s", id);
    for (events_sub *s = h->subs; ok && s; s = s->next)
        deliver(h, s, id, text, resync ? NULL : &e);
    sweep_locked(h);
    pthread_mutex_unlock(&h->lock);
}

/* An entry of an XRANGE or XREAD answer: [id, [field, value...]]; its id and "j" value. */
static bool entry_fields(const kv_reply *ent, const char **id, const char **text)
{
    const kv_reply *fields;

    if (ent->type != KV_REPLY_ARRAY || ent->count < 2 ||
        ent->elements[0]->type != KV_REPLY_STRING)
        return false;
    *id = ent->elements[0]->str;
    fields = ent->elements[1];
    for (size_t f = 0; fields->type == KV_REPLY_ARRAY && f + 1 < fields->count; f += 2)
        if (fields->elements[f]->type == KV_REPLY_STRING &&
            strcmp(fields->elements[f]->str, "j") == 0 &&
            fields->elements[f + 1]->type == KV_REPLY_STRING) {
            *text = fields->elements[f + 1]->str;
            return true;
        }
    return false;
}

/* The id of the stream's oldest entry into out ("" when the stream is empty). */
static cp_status oldest_id(events_hub *h, char *out, size_t cap)
{
    kv_reply *r = NULL;
    cp_error err;
    cp_status st;

    out[0] = '\0';
    cp_error_clear(&err);
    st = kv_commandv(h->cfg.kv, &r, &err, "XRANGE", h->stream_key, "-", "+", "COUNT", "1",
                     (const char *)NULL);
    if (st == CP_OK && r->type == KV_REPLY_ARRAY && r->count == 1 &&
        r->elements[0]->type == KV_REPLY_ARRAY && r->elements[0]->count >= 1 &&
        r->elements[0]->elements[0]->type == KV_REPLY_STRING)
        snprintf(out, cap, "%s", r->elements[0]->elements[0]->str);
    kv_reply_free(r);
    return st;
}

/*
 * With the lock held: sends s the entries after `after` (a Last-Event-ID)
 * up to the last one fanned out, which the reader's next entries follow.
 * When that cannot be complete (the stream no longer reaches back that
 * far, more than EVENTS_REPLAY_MAX entries, Redis away) s gets a resync
 * instead, and reloads.
 */
static void replay_locked(events_hub *h, events_sub *s, const char *after)
{
    char count[16], oldest[64];
    const char *end = h->sent_id[0] != '\0' ? h->sent_id : "+";
    const kv_reply *list;
    kv_reply *r = NULL;
    size_t skip;
    cp_error err;

    cp_error_clear(&err);
    snprintf(count, sizeof(count), "%d", EVENTS_REPLAY_MAX + 1);
    if (oldest_id(h, oldest, sizeof(oldest)) != CP_OK || oldest[0] == '\0' ||
        id_before(after, oldest) ||
        kv_commandv(h->cfg.kv, &r, &err, "XRANGE", h->stream_key, after, end, "COUNT", count,
                    (const char *)NULL) != CP_OK || r->type != KV_REPLY_ARRAY)
        goto resync;
    list = r;
    /* XRANGE includes its start: the client has that one. */
    skip = list->count > 0 && list->elements[0]->type == KV_REPLY_ARRAY &&
           list->elements[0]->count >= 1 &&
           list->elements[0]->elements[0]->type == KV_REPLY_STRING &&
           strcmp(list->elements[0]->elements[0]->str, after) == 0 ? 1 : 0;
    if (list->count - skip > EVENTS_REPLAY_MAX)
        goto resync;
    for (size_t i = skip; i < list->count; i++) {
        const char *id, *text;
        events_entry e;

        if (!entry_fields(list->elements[i], &id, &text))
            continue;
        if (strcmp(text, EVENTS_RESYNC_DATA) == 0)
            deliver(h, s, id, text, NULL);
        else if (entry_parse(text, &e))
            deliver(h, s, id, text, &e);
    }
    kv_reply_free(r);
    return;

resync:
    kv_reply_free(r);
    deliver(h, s, NULL, EVENTS_RESYNC_DATA, NULL);
}

/* Hands out each entry of an XREAD answer: [[key, [[id, [field, value...]]...]]]. */
static void handle_reply(events_hub *h, const kv_reply *r)
{
    if (r->type != KV_REPLY_ARRAY)
        return;
    for (size_t s = 0; s < r->count; s++) {
        const kv_reply *stream = r->elements[s];

        if (stream->type != KV_REPLY_ARRAY || stream->count < 2 ||
            stream->elements[1]->type != KV_REPLY_ARRAY)
            continue;
        for (size_t i = 0; i < stream->elements[1]->count; i++) {
            const kv_reply *ent = stream->elements[1]->elements[i];
            const char *id = NULL, *text = NULL;
            bool has_text = entry_fields(ent, &id, &text);

            if (id == NULL)
                continue;
            snprintf(h->last_id, sizeof(h->last_id), "%s", id);
            if (has_text)
                fan_out(h, h->last_id, text);
        }
    }
}

/*
 * The id to read after: the newest entry now, so that nothing published
 * between two reads is missed ("$" would skip it).
 */
static void find_start(events_hub *h)
{
    kv_reply *r = NULL;
    cp_error err;

    cp_error_clear(&err);
    if (kv_commandv(h->cfg.kv, &r, &err, "XREVRANGE", h->stream_key, "+", "-", "COUNT", "1",
                    (const char *)NULL) != CP_OK)
        return;
    if (r->type == KV_REPLY_ARRAY && r->count == 1 &&
        r->elements[0]->type == KV_REPLY_ARRAY && r->elements[0]->count >= 1 &&
        r->elements[0]->elements[0]->type == KV_REPLY_STRING)
        snprintf(h->last_id, sizeof(h->last_id), "%s", r->elements[0]->elements[0]->str);
    else
        snprintf(h->last_id, sizeof(h->last_id), "0-0");
    kv_reply_free(r);
    pthread_mutex_lock(&h->lock);
    if (h->sent_id[0] == '\0')
        snprintf(h->sent_id, sizeof(h->sent_id), "%s", h->last_id);
    pthread_mutex_unlock(&h->lock);
}

static void *reader_main(void *arg)
{
    events_hub *h = arg;
    char block[16], count[16];

    snprintf(block, sizeof(block), "%d", EVENTS_READ_BLOCK_MS);
    snprintf(count, sizeof(count), "%d", EVENTS_READ_COUNT);
    while (!h->stop) {
        kv_reply *r = NULL;
        cp_error err;
        cp_status st;

        if (strcmp(h->last_id, "$") == 0)
            find_start(h);
        cp_error_clear(&err);
        st = kv_commandv(h->cfg.kv, &r, &err, "XREAD", "COUNT", count, "BLOCK", block,
                         "STREAMS", h->stream_key, h->last_id, (const char *)NULL);
        if (st == CP_OK) {
            handle_reply(h, r);
            kv_reply_free(r);
            owe_resync(h);
        } else if (!h->stop) {
            /* Redis away: the kv backs off; do not spin meanwhile. */
            nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
        }
        pthread_mutex_lock(&h->lock);
        sweep_locked(h);
        pthread_mutex_unlock(&h->lock);
    }
    return NULL;
}

cp_status events_start(events_hub *h, cp_error *err)
{
    if (h->started)
        return CP_OK;
    h->stop = false;
    if (pthread_create(&h->thread, NULL, reader_main, h) != 0)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "events_start: cannot start the reader thread");
    h->started = true;
    return CP_OK;
}

void events_stop(events_hub *h)
{
    if (!h || !h->started)
        return;
    h->stop = true;
    pthread_join(h->thread, NULL);
    h->started = false;
}
