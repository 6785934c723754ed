/*
 * api_reports.c - diagnostic reports over HTTP (docs/api.md, "Orders and
 * reports"): the author's draft under an edit lock (423 while another
 * holds it), submission, the reviewer's approval or rejection, release at
 * once after approval (signed, Ed25519, and stored into the study as a
 * Basic Text SR, PS3.3 A.35.1), the clinic's reading of the released report
 * and acknowledgement of a critical finding; the public key that checks
 * the signatures, the editor's templates and the reading statistics.
 *
 * A change of the order is an Order Record in the audit trail (PS3.15
 * A.5.3.9) typed with the order event; a look at a report's text or a
 * change of it is a Patient Record (A.5.3.10). The dispatch engine
 * publishes each move of the order to the live view (consult/events.h);
 * the acknowledgement of a critical finding is published here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_film.h"
#include "api/api_internal.h"
#include "api/api_orders.h"
#include "api/api_reports.h"
#include "consult/sr.h"
#include "consult/stats.h"
#include "core/alloc.h"
#include "core/log.h"

/* --- shared steps ---------------------------------------------------------------- */

/* Loads the order, answering 503 when reports are not kept here. */
static bool load(api_service *a, http_request *req, order *o)
{
    if (!a->cfg.reports) {
        api_respond_error(req, 503, "unavailable", "reports are not kept here");
        return false;
    }
    return api_order_load(a, req, o);
}

static json_t *version_json(const report_version *v)
{
    char written[32], reviewed[32], released[32], acked[32];

    api_format_time(v->written_us, written);
    api_format_time(v->reviewed_us, reviewed);
    api_format_time(v->released_us, released);
    api_format_time(v->critical_ack_us, acked);
    return json_pack("{s:I, s:i, s:s, s:I, s:o, s:s, s:s, s:s, s:b, s:o, s:s, s:s, s:s, "
                     "s:s, s:s}",
                     "order_id", (json_int_t)v->order_id, "version", v->version,
                     "status", report_status_name(v->status),
                     "author_id", (json_int_t)v->author_id,
                     "reviewer_id", v->reviewer_id ? json_integer(v->reviewer_id) : json_null(),
                     "written", written, "reviewed", reviewed, "released", released,
                     "critical", v->critical,
                     "critical_ack_by",
                     v->critical_ack_by ? json_integer(v->critical_ack_by) : json_null(),
                     "critical_ack", acked, "reason", v->reason,
                     "findings", v->findings ? v->findings : "",
                     "impression", v->impression ? v->impression : "",
                     "signature", v->signature);
}

/* The version with the names of its author and reviewer (a report names its author). */
static json_t *version_json_named(api_service *a, api_names *c, const report_version *v)
{
    json_t *j = version_json(v);
    const char *author, *reviewer;
    api_names own;

    if (j == NULL)
        return NULL;
    if (c == NULL) {
        own.count = own.next = 0;
        c = &own;
    }
    author = api_name_of(a, c, false, v->author_id);
    if (json_object_set_new(j, "author_name", author ? json_string(author) : json_null()) != 0)
        goto fail;
    reviewer = api_name_of(a, c, false, v->reviewer_id);
    if (json_object_set_new(j, "reviewer_name",
                            reviewer ? json_string(reviewer) : json_null()) != 0)
        goto fail;
    return j;

fail:
    json_decref(j);
    return NULL;
}

/* Report errors: 403 not yours, 423 locked, 409 the state does not allow it. */
static cp_status respond_report(http_request *req, cp_status st, const cp_error *err)
{
    const char *msg = err && err->detail[0] ? err->detail : cp_status_summary(st);

    if (st == CP_ERR_EXISTS) {
        http_response_header(req, "Retry-After", "5");
        return api_respond_error(req, 423, "locked", msg);
    }
    if (st == CP_ERR_INVALID)
        return api_respond_error(req, 409, "invalid_state", msg);
    if (st == CP_ERR_AGAIN)
        return api_respond_error(req, 409, "conflict", msg);
    return api_respond_status(req, st, err);
}

static void publish(api_service *a, const order *o, const char *event)
{
    cp_error err;

    if (!a->cfg.events)
        return;
    cp_error_clear(&err);
    if (events_publish(a->cfg.events, DISPATCH_EVENT_STATUS, o, event, o->doctor_id, &err) !=
        CP_OK)
        cp_log_warn("api.event_lost", "order=%lld event=%s detail=\"%s\"", (long long)o->id,
                    event, err.detail);
}

/*
 * After the report workflow moved an order: the dispatch engine follows
 * (and tells the live view), the audit trail records it. o gets the order.
 */
static cp_status after_change(api_service *a, http_request *req, int64_t id, const char *event,
                              order *o, cp_error *err)
{
    cp_status st = order_get(a->cfg.orders, id, o, err);

    if (st != CP_OK)
        return st;
    /* The engine follows, and tells the live view (a STATUS event). */
    if (dispatch_after_report(a->cfg.disp, o, err) != CP_OK)
        cp_log_warn("api.dispatch_follow", "order=%lld event=%s detail=\"%s\"",
                    (long long)id, event, err->detail);
    api_order_audit(a, req, AUDIT_ORDER_RECORD, AUDIT_UPDATE, event, o);
    return CP_OK;
}

/*
 * Releases an approved report at once: signed and stamped, the engine
 * told, the SR stored into the study. A failed SR is logged: the release
 * stands, and the report stays readable over the API.
 */
static cp_status release(api_service *a, http_request *req, order *o, cp_error *err)
{
    report_version v = { 0 };
    char sop[INDEX_UID_MAX + 1];
    cp_status st = report_release(a->cfg.reports, o->id, 0, err);

    if (st == CP_OK)
        st = after_change(a, req, o->id, "released", o, err);
    if (st != CP_OK)
        return st;
    if (report_get(a->cfg.reports, o->id, -1, &v, err) != CP_OK) {
        cp_log_warn("api.report_sr", "order=%lld detail=\"%s\"", (long long)o->id,
                    err->detail);
        return CP_OK;
    }
    if (a->cfg.arc &&
        sr_store_report(a->cfg.arc, a->cfg.idx, a->cfg.dir, o, &v, sop, err) != CP_OK)
        cp_log_warn("api.report_sr", "order=%lld detail=\"%s\"", (long long)o->id,
                    err->detail);
    /* Cloud film: the share link and the printable PDF; failures are logged inside. */
    api_film_on_release(a, req, o, &v);
    report_version_clear(&v);
    return CP_OK;
}

/* --- the author's draft ------------------------------------------------------------- */

static cp_status handle_draft_get(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    report_version v = { 0 };
    json_t *j;
    order o;
    cp_error err;
    cp_status st;

    if (!load(a, req, &o))
        return CP_OK;
    if (p->kind != PRINCIPAL_USER || o.doctor_id != p->id)
        return api_respond_error(req, 403, "forbidden", "only the order's doctor has a draft");
    cp_error_clear(&err);
    st = report_get(a->cfg.reports, o.id, 0, &v, &err);
    if (st == CP_ERR_NOT_FOUND) {
        v.order_id = o.id;
        v.status = REPORT_DRAFT;
        v.author_id = p->id;
    } else if (st != CP_OK) {
        return api_respond_status(req, st, &err);
    }
    j = version_json_named(a, NULL, &v);
    report_version_clear(&v);
    api_order_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_READ, "draft_read", &o);
    return api_respond_json(req, 200, j);
}

static cp_status draft_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *findings, *impression;
    bool critical = false, has_critical;
    int64_t holder = 0;
    report_version v = { 0 };
    json_t *j;
    order o;
    cp_error err;
    cp_status st;

    if (!load(a, req, &o))
        return CP_OK;
    if (!json_is_object(body) ||
        !api_json_string(body, "findings", REPORT_TEXT_MAX, false, &findings) ||
        !api_json_string(body, "impression", REPORT_TEXT_MAX, false, &impression) ||
        !api_json_bool(body, "critical", &critical, &has_critical))
        return api_respond_error(req, 400, "invalid", "findings and impression are text");

    cp_error_clear(&err);
    st = report_lock(a->cfg.reports, p, o.id, &holder, &err);
    if (st == CP_ERR_EXISTS) {
        http_response_header(req, "Retry-After", "5");
        j = json_pack("{s:s, s:i, s:s, s:I}", "error", "another user is editing this report",
                      "status", 423, "reason", "locked", "holder", (json_int_t)holder);
        return api_respond_json(req, 423, j);
    }
    if (st == CP_OK)
        st = report_save_draft(a->cfg.reports, p, o.id, findings ? findings : "",
                               impression ? impression : "", critical, &err);
    if (st == CP_OK)
        st = report_get(a->cfg.reports, o.id, 0, &v, &err);
    if (st != CP_OK)
        return respond_report(req, st, &err);
    j = version_json_named(a, NULL, &v);
    report_version_clear(&v);
    api_order_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_UPDATE, "draft_saved", &o);
    return api_respond_json(req, 200, j);
}

static cp_status handle_draft_put(http_request *req, void *ctx)
{
    return api_read_json(ctx, req, draft_body);
}

/* --- submission and review ------------------------------------------------------------- */

static cp_status submit_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    bool self = false, has_self;
    int version = 0;
    json_t *j;
    order o;
    cp_error err;
    cp_status st;

    if (!load(a, req, &o))
        return CP_OK;
    if (!json_is_object(body) || !api_json_bool(body, "self_approve", &self, &has_self))
        return api_respond_error(req, 400, "invalid", "self_approve is a boolean");
    cp_error_clear(&err);
    st = report_submit(a->cfg.reports, p, o.id, self, &version, &err);
    if (st == CP_OK) {
        cp_error ignored;

        /* The lock would lapse by itself; letting go frees the reviewer's view at once. */
        cp_error_clear(&ignored);
        report_unlock(a->cfg.reports, p, o.id, &ignored);
    }
    if (st == CP_OK)
        st = after_change(a, req, o.id, "reported", &o, &err);
    if (st == CP_OK && o.state == ORDER_APPROVED)
        st = release(a, req, &o, &err);
    if (st != CP_OK)
        return respond_report(req, st, &err);
    j = api_order_json_named(a, NULL, &o);
    if (j)
        json_object_set_new(j, "report_version", json_integer(version));
    return api_respond_json(req, 200, j);
}

static cp_status handle_submit(http_request *req, void *ctx)
{
    return api_read_json(ctx, req, submit_body);
}

static cp_status review_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *reason;
    bool approve = false, has_approve;
    order o;
    cp_error err;
    cp_status st;

    if (!load(a, req, &o))
        return CP_OK;
    if (!json_is_object(body) || !api_json_bool(body, "approve", &approve, &has_approve) ||
        !has_approve || !api_json_string(body, "reason", ORDER_REASON_MAX, false, &reason) ||
        (!approve && (!reason || !reason[0])))
        return api_respond_error(req, 400, "invalid",
                                 "approve is required; a rejection needs a reason");
    cp_error_clear(&err);
    st = report_review(a->cfg.reports, p, o.id, approve, reason, &err);
    if (st == CP_OK)
        st = after_change(a, req, o.id, approve ? "approved" : "rejected", &o, &err);
    if (st == CP_OK && approve)
        st = release(a, req, &o, &err);
    if (st != CP_OK)
        return respond_report(req, st, &err);
    return api_respond_json(req, 200, api_order_json_named(a, NULL, &o));
}

static cp_status handle_review(http_request *req, void *ctx)
{
    return api_read_json(ctx, req, review_body);
}

/* --- reading the report ---------------------------------------------------------------- */

/* The author, a reviewer of its centre, the centre's admin, the service. */
static bool reads_unreleased(api_service *a, const principal *p, const order *o)
{
    if (p->kind == PRINCIPAL_USER && (o->doctor_id == p->id || o->reviewer_id == p->id))
        return true;
    if (api_order_reviewer(p, o))
        return true;
    return api_is_centre_admin(a, p);
}

static cp_status handle_report_get(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    report_version v = { 0 };
    cp_buf text = CP_BUF_INIT;
    api_names *names;
    json_t *j;
    order o;
    cp_error err;
    cp_status st;

    if (!load(a, req, &o))
        return CP_OK;
    if (o.state != ORDER_RELEASED && !reads_unreleased(a, p, &o))
        return api_respond_error(req, 404, "not_found", "the report is not released yet");
    cp_error_clear(&err);
    st = report_get(a->cfg.reports, o.id, -1, &v, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    names = cp_calloc(1, sizeof(*names));
    j = names != NULL ? version_json_named(a, names, &v) : NULL;
    if (j) {
        bool released = v.status == REPORT_RELEASED;
        static const char *const from_order[] = {
            "doctor_name", "reviewer_name", "requesting_institution_name",
            "reading_institution_name",
        };
        json_t *named = api_order_json_named(a, names, &o);

        /* Who asked, who read under whose name: the report's letterhead. */
        for (size_t i = 0; named && i < sizeof(from_order) / sizeof(from_order[0]); i++)
            json_object_set(j, from_order[i], json_object_get(named, from_order[i]));
        json_decref(named);

        json_object_set_new(j, "signature_valid",
                            released ? json_boolean(report_verify(a->cfg.reports, &v, &o))
                                     : json_null());
        /* What the signature covers, so that anyone can check it with the public key. */
        if (released && report_signed_text(&v, &o, &text) == CP_OK)
            json_object_set_new(j, "signed_text", json_stringn((const char *)text.data,
                                                               text.len));
        json_object_set_new(j, "public_key", json_string(report_public_key(a->cfg.reports)));
        json_object_set_new(j, "study_uid", json_string(o.study_uid));
    }
    report_version_clear(&v);
    cp_buf_free(&text);
    cp_free(names);
    api_order_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_READ, "report_read", &o);
    return api_respond_json(req, 200, j);
}

typedef struct versions_ctx {
    api_service *a;
    api_names names;
    json_t *arr;
} versions_ctx;

static cp_status versions_one(void *ctx, const report_version *v)
{
    versions_ctx *c = ctx;

    if (json_array_append_new(c->arr, version_json_named(c->a, &c->names, v)) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_versions(http_request *req, void *ctx)
{
    api_service *a = ctx;
    versions_ctx *vc;
    json_t *arr;
    order o;
    cp_error err;
    cp_status st;

    if (!load(a, req, &o))
        return CP_OK;
    if (!reads_unreleased(a, api_principal(req), &o))
        return api_respond_forbidden(req);
    arr = json_array();
    vc = cp_calloc(1, sizeof(*vc));
    if (!arr || !vc) {
        json_decref(arr);
        cp_free(vc);
        return api_respond_json(req, 503, NULL);
    }
    vc->a = a;
    vc->arr = arr;
    cp_error_clear(&err);
    st = report_versions(a->cfg.reports, o.id, versions_one, vc, &err);
    cp_free(vc);
    if (st != CP_OK) {
        json_decref(arr);
        return api_respond_status(req, st, &err);
    }
    api_order_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_READ, "report_versions", &o);
    return api_respond_json(req, 200, json_pack("{s:o}", "versions", arr));
}

static cp_status handle_ack(http_request *req, void *ctx)
{
    api_service *a = ctx;
    order o;
    cp_error err;
    cp_status st;

    if (!load(a, req, &o))
        return CP_OK;
    cp_error_clear(&err);
    st = report_ack_critical(a->cfg.reports, api_principal(req), o.id, &err);
    if (st != CP_OK)
        return respond_report(req, st, &err);
    api_order_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_UPDATE, "critical_ack", &o);
    publish(a, &o, "critical_ack");
    return api_respond_empty(req);
}

/* --- key, templates, statistics ------------------------------------------------------------ */

static cp_status handle_key(http_request *req, void *ctx)
{
    api_service *a = ctx;

    if (!a->cfg.reports)
        return api_respond_error(req, 503, "unavailable", "reports are not kept here");
    return api_respond_json(req, 200, json_pack("{s:s, s:s}", "algorithm", "Ed25519",
                                                "public_key",
                                                report_public_key(a->cfg.reports)));
}

static cp_status template_one(void *ctx, const report_template *t)
{
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)t->id,
                          "modality", t->modality, "body_part", t->body_part, "name", t->name,
                          "findings", t->findings ? t->findings : "",
                          "impression", t->impression ? t->impression : "");

    if (!j || json_array_append_new(ctx, j) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_templates(http_request *req, void *ctx)
{
    api_service *a = ctx;
    json_t *arr;
    cp_error err;
    cp_status st;

    if (!a->cfg.reports)
        return api_respond_error(req, 503, "unavailable", "reports are not kept here");
    if (!api_is_doctor(api_principal(req)) && !api_is_centre_admin(a, api_principal(req)))
        return api_respond_forbidden(req);
    arr = json_array();
    if (!arr)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = report_template_list(a->cfg.reports, http_request_query(req, "modality"),
                              http_request_query(req, "body_part"), template_one, arr, &err);
    if (st != CP_OK) {
        json_decref(arr);
        return api_respond_status(req, st, &err);
    }
    return api_respond_json(req, 200, json_pack("{s:o}", "templates", arr));
}

static bool parse_stats_query(http_request *req, stats_query *q)
{
    const char *from = http_request_query(req, "from");
    const char *to = http_request_query(req, "to");
    const char *group = http_request_query(req, "group");
    int g;

    memset(q, 0, sizeof(*q));
    if ((from && !api_parse_time(from, false, &q->from_us)) ||
        (to && !api_parse_time(to, true, &q->to_us)))
        return false;
    if (!group || strcmp(group, "total") == 0)
        g = STATS_TOTAL;
    else if (strcmp(group, "institution") == 0)
        g = STATS_BY_REQUESTING;
    else
        g = stats_group_parse(group);
    if (g < 0)
        return false;
    q->group = (stats_group)g;
    return true;
}

static cp_status handle_stats(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const char *format = http_request_query(req, "format");
    bool csv = format && strcmp(format, "csv") == 0;
    stats_row *rows = NULL;
    size_t count = 0;
    stats_query q;
    json_t *j = NULL;
    cp_buf out = CP_BUF_INIT;
    cp_error err;
    cp_status st;

    if (!a->cfg.db_path)
        return api_respond_error(req, 503, "unavailable", "statistics are not kept here");
    if (!api_is_centre_admin(a, api_principal(req)))
        return api_respond_error(req, 403, "forbidden", "for the admin of a reading centre");
    if (!parse_stats_query(req, &q))
        return api_respond_error(req, 400, "invalid",
                                 "from and to are times; group is doctor, institution, "
                                 "reading, day or total");
    cp_error_clear(&err);
    st = stats_compute(a->cfg.db_path, &q, &rows, &count, &err);
    if (st == CP_OK)
        st = csv ? stats_to_csv(rows, count, &out) : stats_to_json(rows, count, &j);
    stats_free(rows);
    if (st != CP_OK) {
        cp_buf_free(&out);
        return api_respond_status(req, st, &err);
    }
    api_audit_change(a, req, AUDIT_QUERY, AUDIT_EXECUTE, "stats", "query", 0, 0, NULL);
    if (!csv)
        return api_respond_json(req, 200, j);
    st = http_respond_buffer(req, 200, "text/csv; charset=utf-8",
                             out.data ? (const void *)out.data : "", out.len);
    cp_buf_free(&out);
    return st;
}

cp_status api_reports_register(api_service *a, http_server *s)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        http_handler_fn fn;
    } routes[] = {
        { HTTP_GET, "/api/orders/{id}/report/draft", handle_draft_get },
        { HTTP_PUT, "/api/orders/{id}/report/draft", handle_draft_put },
        { HTTP_POST, "/api/orders/{id}/report/submit", handle_submit },
        { HTTP_POST, "/api/orders/{id}/report/review", handle_review },
        { HTTP_GET, "/api/orders/{id}/report", handle_report_get },
        { HTTP_GET, "/api/orders/{id}/report/versions", handle_versions },
        { HTTP_POST, "/api/orders/{id}/report/ack-critical", handle_ack },
        { HTTP_GET, "/api/report-key", handle_key },
        { HTTP_GET, "/api/templates", handle_templates },
        { HTTP_GET, "/api/stats", handle_stats },
    };

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        cp_status st = http_server_route(s, routes[i].methods, routes[i].pattern, 0,
                                         routes[i].fn, a);

        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}
