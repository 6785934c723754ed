/*
 * api_audit.c - reading the audit trail (docs/api.md): GET /api/audit,
 * filtered and paged newest first; GET /api/audit/export, every matching
 * record oldest first as one ATNA-shaped JSON object per line (DICOM PS3.15
 * A.5, with the hash of each record), streamed a page at a time so that exporting a
 * whole trail holds one page in memory; and GET /api/audit/verify, the walk
 * of the hash chain. Only a principal with audit.read gets here, and each
 * read is itself recorded as an Audit Log Used event (PS3.15 A.5.3.2).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/api_audit.h"
#include "api/api_internal.h"
#include "core/alloc.h"

/* The filter of a query, with copies of its text (the export outlives its handler). */
typedef struct query {
    audit_filter f;
    char actor[65];
    char patient[65];
    char study[129];
    size_t limit;                       /* 0: none given */
} query;

static bool query_text(http_request *req, const char *name, char *out, size_t cap,
                       const char **field)
{
    const char *v = http_request_query(req, name);

    if (!v)
        return true;
    if (!v[0] || strlen(v) >= cap)
        return false;
    snprintf(out, cap, "%s", v);
    *field = out;
    return true;
}

static bool query_id(http_request *req, const char *name, int64_t *out)
{
    const char *v = http_request_query(req, name);

    return !v || api_parse_id(v, out);
}

/* The filter from the query string; false for a bad value. */
static bool parse_query(http_request *req, query *q)
{
    const char *from = http_request_query(req, "from"), *to = http_request_query(req, "to");
    const char *event = http_request_query(req, "event"), *limit;
    int64_t n = 0;

    memset(q, 0, sizeof(*q));
    if ((from && !api_parse_time(from, false, &q->f.from_us)) ||
        (to && !api_parse_time(to, true, &q->f.to_us)))
        return false;
    if (!query_id(req, "user", &q->f.user_id) || !query_id(req, "before", &q->f.before_seq) ||
        !query_id(req, "after", &q->f.after_seq))
        return false;
    if (!query_text(req, "actor", q->actor, sizeof(q->actor), &q->f.actor) ||
        !query_text(req, "patient", q->patient, sizeof(q->patient), &q->f.patient_id) ||
        !query_text(req, "study", q->study, sizeof(q->study), &q->f.object_id))
        return false;
    if (event) {
        q->f.event = audit_event_parse(event);
        if (q->f.event == AUDIT_EVENT_NONE)
            return false;
    }
    limit = http_request_query(req, "limit");
    if (limit && (!api_parse_id(limit, &n) || n > API_AUDIT_PAGE_MAX))
        return false;
    q->limit = (size_t)n;
    return true;
}

/* The record of this read: the query's own text is what was looked for. */
static void audit_read(api_service *a, http_request *req, const char *type)
{
    audit_record r = { 0 };
    size_t len = 0;

    r.event = AUDIT_LOG_USED;
    r.action = AUDIT_READ;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof(r.type), "%s", type);
    snprintf(r.object_kind, sizeof(r.object_kind), "audit");
    for (size_t i = 0; i < http_request_query_count(req) && len < sizeof(r.object_id); i++) {
        const char *name, *value;

        if (http_request_query_at(req, i, &name, &value) != CP_OK)
            break;
        len += (size_t)snprintf(r.object_id + len, sizeof(r.object_id) - len, "%s%s=%s",
                                len ? "&" : "", name, value);
    }
    api_audit(a, req, &r);
}

static bool may_read(http_request *req)
{
    return policy_allows(api_principal(req), POLICY_AUDIT_READ);
}

/* --- GET /api/audit --------------------------------------------------------------- */

static json_t *record_json(const audit_record *r)
{
    char time[32], action[2] = { (char)r->action, '\0' };
    json_t *detail = r->detail[0] ? json_loads(r->detail, 0, NULL) : NULL;

    api_format_time(r->time_us, time);
    if (r->detail[0] && !detail)
        detail = json_string(r->detail);
    return json_pack("{s:I, s:s, s:s, s:s, s:i, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, "
                     "s:I, s:o?}",
                     "seq", (json_int_t)r->seq, "time", time,
                     "event", audit_event_name(r->event) ? audit_event_name(r->event) : "",
                     "action", action, "outcome", (int)r->outcome, "type", r->type,
                     "user_id", (json_int_t)r->user_id, "actor", r->actor,
                     "actor_roles", r->actor_roles, "peer", r->peer,
                     "object_kind", r->object_kind, "object_id", r->object_id,
                     "patient_id", r->patient_id,
                     "institution_id", (json_int_t)r->institution_id, "detail", detail);
}

typedef struct page {
    json_t *arr;
    int64_t last_seq;
    size_t count;
} page;

static cp_status page_one(void *ctx, const audit_record *r)
{
    page *pg = ctx;

    if (json_array_append_new(pg->arr, record_json(r)) != 0)
        return CP_ERR_NOMEM;
    pg->last_seq = r->seq;
    pg->count++;
    return CP_OK;
}

static cp_status handle_query(http_request *req, void *ctx)
{
    api_service *a = ctx;
    page pg = { 0 };
    query q;
    cp_error err;
    cp_status st;

    if (!may_read(req))
        return api_respond_forbidden(req);
    if (!parse_query(req, &q))
        return api_respond_error(req, 400, "invalid",
                                 "from and to are ISO 8601 or YYYYMMDD, user, before, after "
                                 "and limit (at most 500) numbers, event an event name");
    q.f.newest_first = true;
    q.f.limit = q.limit ? q.limit : API_AUDIT_PAGE_DEFAULT;

    pg.arr = json_array();
    if (!pg.arr)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = audit_query(a->cfg.audit, &q.f, page_one, &pg, &err);
    if (st != CP_OK) {
        json_decref(pg.arr);
        return api_respond_status(req, st, &err);
    }
    audit_read(a, req, "audit_query");
    return api_respond_json(req, 200,
                            json_pack("{s:o, s:o}", "records", pg.arr, "next_before",
                                      pg.count == q.f.limit && pg.last_seq > 1
                                          ? json_integer(pg.last_seq) : json_null()));
}

/* --- GET /api/audit/export ------------------------------------------------------------ */

typedef struct export_ctx {
    api_service *a;
    query q;
    size_t left;                        /* records still wanted; SIZE_MAX: all */
    cp_buf out;                         /* lines of the current page */
    size_t out_pos;
    bool last_page;
} export_ctx;

static cp_status export_one(void *ctx, const audit_record *r,
                            const uint8_t hash[AUDIT_HASH_SIZE])
{
    export_ctx *e = ctx;
    cp_status st;

    st = audit_record_json_hashed(r, hash, e->a->cfg.audit_source, &e->out);
    if (st == CP_OK)
        st = cp_buf_append_byte(&e->out, '\n');
    e->q.f.after_seq = r->seq;
    e->left--;
    return st;
}

/* Fetches the next page of lines into e->out; false on failure. */
static bool export_fill(export_ctx *e)
{
    size_t before = e->left;

    cp_buf_reset(&e->out);
    e->out_pos = 0;
    e->q.f.limit = e->left < API_AUDIT_EXPORT_PAGE ? e->left : API_AUDIT_EXPORT_PAGE;
    if (audit_query_hashed(e->a->cfg.audit, &e->q.f, export_one, e, NULL) != CP_OK)
        return false;
    e->last_page = before - e->left < e->q.f.limit || e->left == 0;
    return true;
}

static ssize_t export_produce(void *ctx, uint64_t pos, uint8_t *buf, size_t max)
{
    export_ctx *e = ctx;
    size_t n;

    (void)pos;
    while (e->out_pos == e->out.len) {
        if (e->last_page)
            return HTTP_STREAM_END;
        if (!export_fill(e))
            return HTTP_STREAM_ERROR;
    }
    n = e->out.len - e->out_pos;
    if (n > max)
        n = max;
    memcpy(buf, e->out.data + e->out_pos, n);
    e->out_pos += n;
    return (ssize_t)n;
}

static void export_free(void *ctx)
{
    export_ctx *e = ctx;

    cp_buf_free(&e->out);
    cp_free(e);
}

static cp_status handle_export(http_request *req, void *ctx)
{
    api_service *a = ctx;
    export_ctx *e;
    cp_status st;

    if (!may_read(req))
        return api_respond_forbidden(req);
    e = cp_calloc(1, sizeof(*e));
    if (!e)
        return api_respond_json(req, 503, NULL);
    if (!parse_query(req, &e->q)) {
        cp_free(e);
        return api_respond_error(req, 400, "invalid",
                                 "from and to are ISO 8601 or YYYYMMDD, user, before, after "
                                 "and limit numbers, event an event name");
    }
    e->a = a;
    e->left = e->q.limit ? e->q.limit : SIZE_MAX;
    e->q.f.newest_first = false;
    if (!e->q.f.to_us) {
        struct timespec now;

        /* Fixed now, so that records written while it runs do not prolong it. */
        clock_gettime(CLOCK_REALTIME, &now);
        e->q.f.to_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    }

    audit_read(a, req, "audit_export");
    st = http_respond_stream(req, 200, "application/x-ndjson", -1, export_produce, e,
                             export_free);
    return st;
}

/* --- GET /api/audit/verify ------------------------------------------------------------ */

static cp_status handle_verify(http_request *req, void *ctx)
{
    api_service *a = ctx;
    audit_verify_result res = { 0 };
    cp_error err;
    cp_status st;
    bool intact;

    if (!may_read(req))
        return api_respond_forbidden(req);
    cp_error_clear(&err);
    st = audit_verify(a->cfg.audit, &res, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    audit_read(a, req, "audit_verify");
    intact = res.first_bad_seq == 0;
    return api_respond_json(req, 200,
                            json_pack("{s:I, s:b, s:o, s:o}", "records", (json_int_t)res.records,
                                      "intact", intact, "first_bad_seq",
                                      intact ? json_null() : json_integer(res.first_bad_seq),
                                      "problem",
                                      intact ? json_null() : json_string(res.problem)));
}

cp_status api_audit_register(api_service *a, http_server *s)
{
    cp_status st;

    st = http_server_route(s, HTTP_GET, "/api/audit", 0, handle_query, a);
    if (st == CP_OK)
        st = http_server_route(s, HTTP_GET, "/api/audit/export", 0, handle_export, a);
    if (st == CP_OK)
        st = http_server_route(s, HTTP_GET, "/api/audit/verify", 0, handle_verify, a);
    return st;
}
