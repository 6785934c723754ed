/*
 * api_orders.c - reading orders over HTTP (docs/api.md, "Orders and
 * reports"): a clinic asks for a read of a study, doctors see the pool and
 * grab, open, give back or answer offers, a centre's admin assigns and
 * keeps the fallback roster, the clinic cancels; GET /api/events streams
 * the changes (server-sent events, consult/events.h).
 *
 * Every order change is written to the audit trail as an Order Record
 * (PS3.15 A.5.3.9) whose type is the order event ("submitted", "grabbed",
 * ...); reads of orders and of the pool as Order Record reads or Queries.
 *
 * Who sees which order (api_order_visible): the clinic its institution's
 * orders; a doctor the orders they hold, are offered or may take (pooled
 * and eligible), and a reviewer those of their centre waiting for review
 * or reviewed; a centre's admin every order asked of an institution of its
 * subtree, read by it, or asked by an institution its doctors hold a
 * contract with; the service all. An order one may not see is 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/api_orders.h"
#include "core/alloc.h"
#include "core/log.h"

/* --- who sees what ------------------------------------------------------------ */

bool api_is_doctor(const principal *p)
{
    return p->kind == PRINCIPAL_USER && (p->roles & (ROLE_RADIOLOGIST | ROLE_REVIEWER)) != 0;
}

bool api_is_centre_admin(api_service *a, const principal *p)
{
    directory_institution inst;
    cp_error err;

    if (p->kind == PRINCIPAL_SERVICE)
        return true;
    if (p->kind != PRINCIPAL_USER || !(p->roles & ROLE_INSTITUTION_ADMIN))
        return false;
    cp_error_clear(&err);
    return directory_institution_get(a->cfg.dir, p->institution_id, &inst, &err) == CP_OK &&
           inst.kind == DIRECTORY_CENTRE;
}

bool api_own_institution(const principal *p, int64_t institution_id)
{
    size_t own = p->own_grant_count ? p->own_grant_count : p->grant_count;

    if (p->kind == PRINCIPAL_SERVICE)
        return true;
    for (size_t i = 0; i < own && i < p->grant_count; i++)
        if (p->grants[i].institution_id == institution_id &&
            (p->own_grant_count || p->grants[i].modalities[0] == '\0'))
            return true;
    return false;
}

bool api_order_reviewer(const principal *p, const order *o)
{
    /* A doctor's principal holds contracts only: its own institution is institution_id. */
    return p->kind == PRINCIPAL_USER && (p->roles & ROLE_REVIEWER) && o->reading_id != 0 &&
           (p->institution_id == o->reading_id || api_own_institution(p, o->reading_id));
}

typedef struct reads_for {
    const principal *p;
    bool found;
} reads_for;

static cp_status reads_for_one(void *ctx, const directory_contract *c)
{
    reads_for *r = ctx;

    if (!c->revoked && api_manages(r->p, c->reading_id)) {
        r->found = true;
        return CP_ERR_STOPPED;
    }
    return CP_OK;
}

/* Whether a doctor of the admin's centre holds a contract with the institution. */
static bool centre_reads_for(api_service *a, const principal *p, int64_t requesting_id)
{
    reads_for r = { p, false };
    cp_error err;

    cp_error_clear(&err);
    directory_contract_list(a->cfg.dir, 0, requesting_id, reads_for_one, &r, &err);
    return r.found;
}

bool api_order_visible(api_service *a, const principal *p, const order *o)
{
    if (p->kind == PRINCIPAL_SERVICE)
        return true;
    if (api_is_doctor(p)) {
        if (o->doctor_id == p->id || o->reviewer_id == p->id)
            return true;
        if (api_order_reviewer(p, o) && o->state >= ORDER_REPORTED &&
            o->state <= ORDER_RELEASED)
            return true;
        if (o->state == ORDER_POOLED && a->cfg.disp && dispatch_eligible(a->cfg.disp, p, o))
            return true;
    }
    if (api_is_centre_admin(a, p))
        return api_manages(p, o->requesting_id) ||
               (o->reading_id != 0 && api_manages(p, o->reading_id)) ||
               centre_reads_for(a, p, o->requesting_id);
    return !api_is_doctor(p) && api_own_institution(p, o->requesting_id);
}

/* 503 unless the consult service is there. */
static bool need_consult(api_service *a, http_request *req)
{
    if (a->cfg.disp && a->cfg.orders)
        return true;
    api_respond_error(req, 503, "unavailable", "remote reading is not running here");
    return false;
}

bool api_order_load(api_service *a, http_request *req, order *o)
{
    int64_t id;
    cp_error err;
    cp_status st;

    if (!need_consult(a, req) || !api_param_id(req, &id))
        return false;
    cp_error_clear(&err);
    st = order_get(a->cfg.orders, id, o, &err);
    if (st != CP_OK) {
        api_respond_status(req, st, &err);
        return false;
    }
    if (!api_order_visible(a, api_principal(req), o)) {
        api_respond_error(req, 404, "not_found", "no such order");
        return false;
    }
    return true;
}

/* The longest patient_phone taken (with its spaces and dashes). */
#define ORDER_PHONE_MAX 32

/* --- JSON and audit --------------------------------------------------------------- */

static int set_time(json_t *obj, const char *key, int64_t us)
{
    char text[32];

    if (us == 0)
        return json_object_set_new(obj, key, json_null());
    api_format_time(us, text);
    return json_object_set_new(obj, key, json_string(text));
}

static int set_id(json_t *obj, const char *key, int64_t id)
{
    return json_object_set_new(obj, key, id ? json_integer(id) : json_null());
}

json_t *api_order_json(const order *o)
{
    json_t *j = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, "
                          "s:I, s:i, s:i}",
                          "id", (json_int_t)o->id, "version", (json_int_t)o->version,
                          "state", order_state_name(o->state),
                          "priority", order_priority_name(o->priority),
                          "study_uid", o->study_uid, "patient_id", o->patient_id,
                          "issuer", o->issuer, "accession", o->accession,
                          "modality", o->modality, "body_part", o->body_part,
                          "clinical_notes", o->clinical_notes, "weight", (int)o->weight,
                          "requesting_id", (json_int_t)o->requesting_id,
                          "returns", (int)o->returns, "rejections", (int)o->rejections);
    int bad = 0;

    if (!j)
        return NULL;
    bad |= set_id(j, "requested_by", o->requested_by);
    bad |= set_id(j, "wanted_doctor_id", o->wanted_doctor_id);
    bad |= set_id(j, "reading_id", o->reading_id);
    bad |= set_id(j, "doctor_id", o->doctor_id);
    bad |= set_id(j, "reviewer_id", o->reviewer_id);
    bad |= set_time(j, "created", o->created_us);
    bad |= set_time(j, "pooled", o->pooled_us);
    bad |= set_time(j, "deadline", o->deadline_us);
    bad |= set_time(j, "claimed", o->claimed_us);
    bad |= set_time(j, "opened", o->opened_us);
    bad |= set_time(j, "reported", o->reported_us);
    bad |= set_time(j, "approved", o->approved_us);
    bad |= set_time(j, "released", o->released_us);
    if (bad) {
        json_decref(j);
        return NULL;
    }
    return j;
}

const char *api_name_of(api_service *a, api_names *c, bool institution, int64_t id)
{
    directory_institution inst;
    directory_user u;
    const char *found = NULL;
    api_name *slot;
    cp_error err;

    if (id == 0)
        return NULL;
    for (size_t i = 0; i < c->count; i++)
        if (c->e[i].id == id && c->e[i].institution == institution)
            return c->e[i].name;
    cp_error_clear(&err);
    if (institution && directory_institution_get(a->cfg.dir, id, &inst, &err) == CP_OK)
        found = inst.name;
    else if (!institution && directory_user_get(a->cfg.dir, id, &u, &err) == CP_OK)
        found = u.display_name[0] != '\0' ? u.display_name : u.username;
    if (found == NULL)
        return NULL;
    if (c->count < API_NAMES_MAX) {
        slot = &c->e[c->count++];
    } else {
        slot = &c->e[c->next];
        c->next = (c->next + 1) % API_NAMES_MAX;
    }
    slot->id = id;
    slot->institution = institution;
    snprintf(slot->name, sizeof(slot->name), "%s", found);
    return slot->name;
}

static int set_name(json_t *obj, const char *key, const char *name)
{
    return json_object_set_new(obj, key, name ? json_string(name) : json_null());
}

json_t *api_order_json_named(api_service *a, api_names *c, const order *o)
{
    api_names own;
    json_t *j = api_order_json(o);
    int bad = 0;

    if (j == NULL)
        return NULL;
    if (c == NULL) {
        own.count = own.next = 0;
        c = &own;
    }
    bad |= set_name(j, "doctor_name", api_name_of(a, c, false, o->doctor_id));
    bad |= set_name(j, "reviewer_name", api_name_of(a, c, false, o->reviewer_id));
    bad |= set_name(j, "requesting_institution_name",
                    api_name_of(a, c, true, o->requesting_id));
    bad |= set_name(j, "reading_institution_name", api_name_of(a, c, true, o->reading_id));
    if (o->state == ORDER_OFFERED && a->cfg.disp) {
        int64_t due = 0;
        cp_error err;

        /* The offer card counts down to the end of the answer window. */
        cp_error_clear(&err);
        dispatch_offer_expires(a->cfg.disp, o->id, &due, &err);
        bad |= set_time(j, "offer_expires", due);
    }
    if (bad) {
        json_decref(j);
        return NULL;
    }
    return j;
}

void api_order_audit(api_service *a, const http_request *req, audit_event event,
                     audit_action action, const char *type, const order *o)
{
    audit_record r;

    memset(&r, 0, sizeof(r));
    r.event = event;
    r.action = action;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof(r.type), "%s", type);
    snprintf(r.object_kind, sizeof(r.object_kind), "order");
    snprintf(r.object_id, sizeof(r.object_id), "%lld", (long long)o->id);
    /* A patient id is at most 64 characters (LO); the record keeps that many. */
    memcpy(r.patient_id, o->patient_id,
           sizeof(r.patient_id) < sizeof(o->patient_id) ? sizeof(r.patient_id)
                                                       : sizeof(o->patient_id));
    r.patient_id[sizeof(r.patient_id) - 1] = '\0';
    r.institution_id = o->requesting_id;
    snprintf(r.detail, sizeof(r.detail), "{\"study\":\"%s\",\"state\":\"%s\"}", o->study_uid,
             order_state_name(o->state));
    api_audit(a, req, &r);
}

/*
 * The error a dispatch call stands for: 409 "conflict" when the order
 * moved meanwhile, 409 "invalid_state" for a move its state does not
 * allow, else as api_respond_status.
 */
static cp_status respond_dispatch(http_request *req, cp_status st, const cp_error *err)
{
    const char *msg = err && err->detail[0] ? err->detail : cp_status_summary(st);

    if (st == CP_ERR_AGAIN)
        return api_respond_error(req, 409, "conflict", msg);
    if (st == CP_ERR_INVALID)
        return api_respond_error(req, 409, "invalid_state", msg);
    return api_respond_status(req, st, err);
}

/* Answers the order as it is now, after a change recorded as `type`. */
static cp_status respond_changed(api_service *a, http_request *req, int64_t id,
                                 const char *type)
{
    order o;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    st = order_get(a->cfg.orders, id, &o, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    api_order_audit(a, req, AUDIT_ORDER_RECORD, AUDIT_UPDATE, type, &o);
    return api_respond_json(req, 200, api_order_json_named(a, NULL, &o));
}

/* --- asking for a read ---------------------------------------------------------------- */

typedef struct study_row {
    bool found;
    int64_t institution_id;
    char modalities[INDEX_MODALITIES_MAX + 1];
    char patient_id[INDEX_LO_MAX + 1];
    char issuer[INDEX_LO_MAX + 1];
    char accession[INDEX_SH_MAX + 1];
} study_row;

static cp_status on_study(void *ctx, const index_row *row)
{
    study_row *s = ctx;

    s->found = true;
    s->institution_id = row->institution_id;
    memcpy(s->modalities, row->modalities_in_study, sizeof(s->modalities));
    memcpy(s->patient_id, row->rec.patient.id, sizeof(s->patient_id));
    memcpy(s->issuer, row->rec.patient.issuer, sizeof(s->issuer));
    memcpy(s->accession, row->rec.study.accession, sizeof(s->accession));
    return CP_ERR_STOPPED;
}

/* The study's main modality: the first of ModalitiesInStudy that is not SR, PR or KO. */
static void main_modality(const char *list, char *out, size_t cap)
{
    const char *m = list;

    out[0] = '\0';
    while (*m) {
        size_t n = strcspn(m, "\\");

        if (n > 0 && n < cap && strncmp(m, "SR", n) != 0 && strncmp(m, "PR", n) != 0 &&
            strncmp(m, "KO", n) != 0) {
            memcpy(out, m, n);
            out[n] = '\0';
            return;
        }
        m += n;
        if (*m == '\\')
            m++;
    }
}

static cp_status find_study(api_service *a, const char *uid, study_row *s, cp_error *err)
{
    index_term term = { "StudyInstanceUID", uid };
    index_query_spec spec;

    memset(s, 0, sizeof(*s));
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_STUDY;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = 1;
    return index_query(a->cfg.idx, &spec, on_study, s, err);
}

static bool may_request(const principal *p, int64_t institution_id)
{
    if (p->kind == PRINCIPAL_SERVICE)
        return true;
    if (p->kind == PRINCIPAL_TOKEN)
        return api_own_institution(p, institution_id);
    return p->kind == PRINCIPAL_USER &&
           (p->roles & (ROLE_TECHNICIAN | ROLE_INSTITUTION_ADMIN)) != 0 &&
           api_own_institution(p, institution_id);
}

/*
 * The last four digits of a phone number into out (5 bytes): the number
 * may carry spaces, dashes, dots, brackets and a leading '+'; false when it
 * has anything else or fewer than four digits. Only these digits are kept:
 * the cloud film's second factor where the institution asks for it.
 */
static bool phone_last4(const char *phone, char out[5])
{
    size_t digits = 0, n = strlen(phone);

    for (size_t i = 0; i < n; i++) {
        char c = phone[i];

        if (c >= '0' && c <= '9')
            digits++;
        else if (!strchr(" -.()", c) && !(c == '+' && i == 0))
            return false;
    }
    if (digits < 4)
        return false;
    out[4] = '\0';
    for (size_t i = n, k = 4; k > 0; i--) {
        if (phone[i - 1] >= '0' && phone[i - 1] <= '9')
            out[--k] = phone[i - 1];
    }
    return true;
}

static cp_status create_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *uid, *part, *prio, *notes, *phone = NULL;
    char last4[5] = "";
    int64_t wanted = 0;
    bool has_wanted;
    int priority = ORDER_ROUTINE;
    study_row s;
    order o;
    cp_error err;
    cp_status st;

    if (!json_is_object(body) ||
        !api_json_string(body, "study_uid", INDEX_UID_MAX, true, &uid) ||
        !api_json_string(body, "body_part", INDEX_CS_MAX, false, &part) ||
        !api_json_string(body, "priority", 16, false, &prio) ||
        !api_json_string(body, "clinical_notes", ORDER_NOTES_MAX, false, &notes) ||
        !api_json_int(body, "wanted_doctor_id", 1, INT64_MAX, &wanted, &has_wanted) ||
        (prio && (priority = order_priority_parse(prio)) < 0))
        return api_respond_error(req, 400, "invalid",
                                 "study_uid is required; priority is routine or urgent");
    if (!api_json_string(body, "patient_phone", ORDER_PHONE_MAX, false, &phone) ||
        (phone && phone[0] && !phone_last4(phone, last4)))
        return api_respond_error(req, 400, "invalid",
                                 "patient_phone is a phone number of at least four digits");

    cp_error_clear(&err);
    st = find_study(a, uid, &s, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    if (!s.found || !policy_study_visible(p, s.institution_id, NULL))
        return api_respond_error(req, 404, "not_found", "no such study");
    if (!may_request(p, s.institution_id))
        return api_respond_forbidden(req);

    memset(&o, 0, sizeof(o));
    snprintf(o.study_uid, sizeof(o.study_uid), "%s", uid);
    memcpy(o.patient_id, s.patient_id, sizeof(o.patient_id));
    memcpy(o.issuer, s.issuer, sizeof(o.issuer));
    memcpy(o.accession, s.accession, sizeof(o.accession));
    main_modality(s.modalities, o.modality, sizeof(o.modality));
    snprintf(o.body_part, sizeof(o.body_part), "%s", part ? part : "");
    snprintf(o.clinical_notes, sizeof(o.clinical_notes), "%s", notes ? notes : "");
    o.priority = (order_priority)priority;
    o.requesting_id = s.institution_id;
    o.requested_by = p->kind == PRINCIPAL_USER ? p->id : 0;
    o.wanted_doctor_id = wanted;
    memcpy(o.phone_last4, last4, sizeof(o.phone_last4));
    explicit_bzero(last4, sizeof(last4));
    st = dispatch_submit(a->cfg.disp, &o, &err);
    if (st == CP_ERR_EXISTS)
        return api_respond_error(req, 409, "exists", "the study has an open order already");
    if (st != CP_OK)
        return respond_dispatch(req, st, &err);
    api_order_audit(a, req, AUDIT_ORDER_RECORD, AUDIT_CREATE, "submitted", &o);
    return api_respond_json(req, 201, api_order_json_named(a, NULL, &o));
}

static cp_status handle_create(http_request *req, void *ctx)
{
    if (!need_consult(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, create_body);
}

/* --- listing and reading ----------------------------------------------------------------- */

typedef struct list_ctx {
    api_service *a;
    const principal *p;
    json_t *arr;
    size_t want;
    size_t got;
    size_t scanned;                     /* rows of this page, visible or not */
    int64_t last_scanned;
    int64_t last;                       /* the last order answered */
    bool more;
    api_names names;
} list_ctx;

static cp_status list_one(void *ctx, const order *o)
{
    list_ctx *l = ctx;

    if (l->got == l->want) {
        if (api_order_visible(l->a, l->p, o)) {
            l->more = true;
            return CP_ERR_STOPPED;
        }
    } else if (api_order_visible(l->a, l->p, o)) {
        if (json_array_append_new(l->arr, api_order_json_named(l->a, &l->names, o)) != 0)
            return CP_ERR_NOMEM;
        l->got++;
        l->last = o->id;
    }
    l->scanned++;
    l->last_scanned = o->id;
    return CP_OK;
}

/*
 * Reads pages of orders until `want` visible ones and one more are found,
 * the table ends, or API_ORDERS_SCAN_PAGES were read (then more is set and
 * last is where the next call goes on).
 */
static cp_status list_scan(api_service *a, order_filter *f, list_ctx *l, cp_error *err)
{
    for (int page = 0; page < API_ORDERS_SCAN_PAGES; page++) {
        cp_status st;

        l->scanned = 0;
        st = order_list(a->cfg.orders, f, list_one, l, err);
        if (st == CP_ERR_STOPPED)
            return CP_OK;
        if (st != CP_OK)
            return st;
        if (l->scanned < f->limit)
            return CP_OK;
        f->after_id = l->last_scanned;
    }
    l->more = true;
    l->last = l->last_scanned;
    return CP_OK;
}

static cp_status handle_list(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const char *state = http_request_query(req, "state");
    const char *mine = http_request_query(req, "mine");
    const char *inst = http_request_query(req, "institution");
    const char *after = http_request_query(req, "after");
    const char *limit = http_request_query(req, "limit");
    list_ctx l;
    order_filter f;
    order_state st_one;
    int64_t inst_id = 0, n = 0;
    json_t *out;
    cp_error err;
    cp_status st;

    if (!need_consult(a, req))
        return CP_OK;
    memset(&l, 0, sizeof(l));
    l.a = a;
    l.p = api_principal(req);
    l.want = ORDER_LIST_DEFAULT;
    memset(&f, 0, sizeof(f));
    if (state) {
        st_one = order_state_parse(state);
        if (st_one == 0)
            return api_respond_error(req, 400, "invalid", "no such state");
        f.states = &st_one;
        f.state_count = 1;
    }
    if ((inst && !api_parse_id(inst, &inst_id)) || (after && !api_parse_id(after, &f.after_id)) ||
        (limit && (!api_parse_id(limit, &n) || n > API_ORDERS_PAGE_MAX)))
        return api_respond_error(req, 400, "invalid", "institution, after and limit are ids");
    if (inst) {
        f.requesting = &inst_id;
        f.requesting_count = 1;
    }
    if (mine && strcmp(mine, "1") == 0)
        f.doctor_id = l.p->kind == PRINCIPAL_USER ? l.p->id : -1;
    f.study_uid = http_request_query(req, "study");
    f.limit = API_ORDERS_PAGE_MAX;
    if (n > 0)
        l.want = (size_t)n;

    l.arr = json_array();
    if (!l.arr)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = list_scan(a, &f, &l, &err);
    if (st != CP_OK) {
        json_decref(l.arr);
        return api_respond_status(req, st, &err);
    }
    out = json_pack("{s:o, s:o}", "orders", l.arr,
                    "next_after", l.more ? json_integer(l.last) : json_null());
    api_audit_change(a, req, AUDIT_QUERY, AUDIT_EXECUTE, "orders", "query", 0, inst_id, NULL);
    return api_respond_json(req, 200, out);
}

static cp_status history_one(void *ctx, const order_event *e)
{
    json_t *arr = ctx;
    char when[32];
    json_t *j;

    api_format_time(e->time_us, when);
    j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:s}", "seq", (json_int_t)e->seq,
                  "time", when, "from", e->from ? order_state_name(e->from) : "",
                  "to", order_state_name(e->to), "event", e->event,
                  "actor_id", e->actor_id ? json_integer(e->actor_id) : json_null(),
                  "reason", e->reason);
    if (!j || json_array_append_new(arr, j) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_get(http_request *req, void *ctx)
{
    api_service *a = ctx;
    json_t *j, *hist;
    order o;
    cp_error err;
    cp_status st;

    if (!api_order_load(a, req, &o))
        return CP_OK;
    j = api_order_json_named(a, NULL, &o);
    hist = json_array();
    if (!j || !hist) {
        json_decref(j);
        json_decref(hist);
        return api_respond_json(req, 503, NULL);
    }
    cp_error_clear(&err);
    st = order_history(a->cfg.orders, o.id, history_one, hist, &err);
    if (st != CP_OK) {
        json_decref(j);
        json_decref(hist);
        return api_respond_status(req, st, &err);
    }
    json_object_set_new(j, "history", hist);
    api_order_audit(a, req, AUDIT_ORDER_RECORD, AUDIT_READ, "order_read", &o);
    return api_respond_json(req, 200, j);
}

/* --- the doctor's side ------------------------------------------------------------------- */

static bool need_doctor(api_service *a, http_request *req)
{
    if (!need_consult(a, req))
        return false;
    if (api_is_doctor(api_principal(req)))
        return true;
    api_respond_error(req, 403, "forbidden", "for radiologists and reviewers");
    return false;
}

static cp_status handle_pool(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    order *list;
    size_t count = 0;
    api_names *names;
    json_t *arr;
    cp_error err;
    cp_status st;

    if (!need_doctor(a, req))
        return CP_OK;
    cp_error_clear(&err);
    st = dispatch_heartbeat(a->cfg.disp, p, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    list = cp_calloc(API_POOL_MAX, sizeof(*list));
    names = cp_calloc(1, sizeof(*names));
    if (!list || !names) {
        cp_free(list);
        cp_free(names);
        return api_respond_json(req, 503, NULL);
    }
    st = dispatch_visible(a->cfg.disp, p, list, API_POOL_MAX, &count, &err);
    arr = st == CP_OK ? json_array() : NULL;
    for (size_t i = 0; arr && i < count; i++)
        if (json_array_append_new(arr, api_order_json_named(a, names, &list[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    cp_free(list);
    cp_free(names);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    api_audit_change(a, req, AUDIT_QUERY, AUDIT_EXECUTE, "pool", "query", 0, 0, NULL);
    return api_respond_json(req, 200, arr ? json_pack("{s:o}", "orders", arr) : NULL);
}

static cp_status handle_presence(http_request *req, void *ctx)
{
    api_service *a = ctx;
    cp_error err;
    cp_status st;

    if (!need_doctor(a, req))
        return CP_OK;
    cp_error_clear(&err);
    st = dispatch_heartbeat(a->cfg.disp, api_principal(req), &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    return api_respond_empty(req);
}

static cp_status handle_grab(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    dispatch_grab_result result;
    int64_t id;
    order o;
    cp_error err;
    cp_status st;

    if (!need_doctor(a, req) || !api_param_id(req, &id))
        return CP_OK;
    cp_error_clear(&err);
    st = dispatch_grab(a->cfg.disp, p, id, &result, &o, &err);
    if (st != CP_OK)
        return respond_dispatch(req, st, &err);
    switch (result) {
    case DISPATCH_GRABBED:
        api_order_audit(a, req, AUDIT_ORDER_RECORD, AUDIT_UPDATE, "grabbed", &o);
        return api_respond_json(req, 200, api_order_json_named(a, NULL, &o));
    case DISPATCH_GONE:
        return api_respond_error(req, 409, "gone", "someone else has it, or it left the pool");
    case DISPATCH_OVER_CAP:
        return api_respond_error(req, 409, "over_cap", "you hold as much as you may");
    default:
        return api_respond_error(req, 403, "not_eligible", "you may not read this order");
    }
}

static cp_status handle_open(http_request *req, void *ctx)
{
    api_service *a = ctx;
    order o;
    cp_error err;
    cp_status st;

    if (!need_doctor(a, req) || !api_order_load(a, req, &o))
        return CP_OK;
    cp_error_clear(&err);
    st = dispatch_open(a->cfg.disp, api_principal(req), o.id, &err);
    if (st != CP_OK)
        return respond_dispatch(req, st, &err);
    return respond_changed(a, req, o.id, "opened");
}

static cp_status give_back_body(api_service *a, http_request *req, json_t *body)
{
    const char *reason;
    int64_t id;
    cp_error err;
    cp_status st;

    if (!api_param_id(req, &id))
        return CP_OK;
    if (!json_is_object(body) ||
        !api_json_string(body, "reason", ORDER_REASON_MAX, true, &reason))
        return api_respond_error(req, 400, "invalid", "a reason is required");
    cp_error_clear(&err);
    st = dispatch_give_back(a->cfg.disp, api_principal(req), id, reason, &err);
    if (st != CP_OK)
        return respond_dispatch(req, st, &err);
    return respond_changed(a, req, id, "given_back");
}

static cp_status handle_give_back(http_request *req, void *ctx)
{
    if (!need_doctor(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, give_back_body);
}

static cp_status answer_body(api_service *a, http_request *req, json_t *body)
{
    const char *reason;
    bool accept = false, has_accept;
    int64_t id;
    cp_error err;
    cp_status st;

    if (!api_param_id(req, &id))
        return CP_OK;
    if (!json_is_object(body) || !api_json_bool(body, "accept", &accept, &has_accept) ||
        !has_accept || !api_json_string(body, "reason", ORDER_REASON_MAX, false, &reason) ||
        (!accept && !reason))
        return api_respond_error(req, 400, "invalid", "accept is required; declining needs a "
                                 "reason");
    cp_error_clear(&err);
    st = dispatch_answer(a->cfg.disp, api_principal(req), id, accept, reason ? reason : "",
                         &err);
    if (st != CP_OK)
        return respond_dispatch(req, st, &err);
    return respond_changed(a, req, id, accept ? "accepted" : "declined");
}

static cp_status handle_answer(http_request *req, void *ctx)
{
    if (!need_doctor(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, answer_body);
}

/* --- the centre's and the clinic's side ---------------------------------------------------- */

static cp_status assign_body(api_service *a, http_request *req, json_t *body)
{
    int64_t id, doctor;
    bool has_doctor;
    order o;
    cp_error err;
    cp_status st;

    if (!api_order_load(a, req, &o))
        return CP_OK;
    id = o.id;
    if (!json_is_object(body) ||
        !api_json_int(body, "doctor_id", 1, INT64_MAX, &doctor, &has_doctor) || !has_doctor)
        return api_respond_error(req, 400, "invalid", "doctor_id is required");
    cp_error_clear(&err);
    st = dispatch_assign(a->cfg.disp, api_principal(req), id, doctor, &err);
    if (st != CP_OK)
        return respond_dispatch(req, st, &err);
    return respond_changed(a, req, id, "offered");
}

static cp_status handle_assign(http_request *req, void *ctx)
{
    api_service *a = ctx;

    if (!need_consult(a, req))
        return CP_OK;
    if (!api_is_centre_admin(a, api_principal(req)))
        return api_respond_error(req, 403, "forbidden", "for the admin of a reading centre");
    return api_read_json(a, req, assign_body);
}

static cp_status cancel_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *reason;
    order o;
    cp_error err;
    cp_status st;

    if (!api_order_load(a, req, &o))
        return CP_OK;
    if (!json_is_object(body) ||
        !api_json_string(body, "reason", ORDER_REASON_MAX, true, &reason))
        return api_respond_error(req, 400, "invalid", "a reason is required");
    if (!may_request(p, o.requesting_id) && !api_is_centre_admin(a, p))
        return api_respond_forbidden(req);
    cp_error_clear(&err);
    st = dispatch_cancel(a->cfg.disp, p, o.id, reason, &err);
    if (st != CP_OK)
        return respond_dispatch(req, st, &err);
    return respond_changed(a, req, o.id, "cancelled");
}

static cp_status handle_cancel(http_request *req, void *ctx)
{
    if (!need_consult(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, cancel_body);
}

static cp_status duty_body(api_service *a, http_request *req, json_t *body)
{
    const char *until_text = NULL;
    int64_t doctor, until = 0;
    char detail[96];
    cp_error err;
    cp_status st;

    if (!api_parse_id(http_request_param(req, "doctor_id"), &doctor))
        return api_respond_error(req, 404, "not_found", "no such id");
    if (!json_is_object(body) || !api_json_string(body, "until", 40, false, &until_text) ||
        (until_text && !api_parse_time(until_text, false, &until)))
        return api_respond_error(req, 400, "invalid", "until is a time (null: off duty)");
    cp_error_clear(&err);
    st = dispatch_set_duty(a->cfg.disp, doctor, until, &err);
    if (st != CP_OK)
        return respond_dispatch(req, st, &err);
    snprintf(detail, sizeof(detail), "{\"until\":\"%s\"}", until_text ? until_text : "");
    api_audit_change(a, req, AUDIT_ORDER_RECORD, AUDIT_UPDATE, "duty", "user", doctor, 0,
                     detail);
    return api_respond_empty(req);
}

static cp_status handle_duty(http_request *req, void *ctx)
{
    api_service *a = ctx;

    if (!need_consult(a, req))
        return CP_OK;
    if (!api_is_centre_admin(a, api_principal(req)))
        return api_respond_error(req, 403, "forbidden", "for the admin of a reading centre");
    return api_read_json(a, req, duty_body);
}

typedef struct duty_ctx {
    api_service *a;
    api_names names;
    json_t *arr;
} duty_ctx;

static cp_status duty_one(void *ctx, int64_t doctor_id, int64_t until_us)
{
    duty_ctx *c = ctx;
    const char *name = api_name_of(c->a, &c->names, false, doctor_id);
    json_t *j = json_pack("{s:I, s:o}", "doctor_id", (json_int_t)doctor_id,
                          "doctor_name", name ? json_string(name) : json_null());

    if (!j || set_time(j, "until", until_us) != 0 || json_array_append_new(c->arr, j) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_duty_list(http_request *req, void *ctx)
{
    api_service *a = ctx;
    duty_ctx *c;
    json_t *arr;
    cp_error err;
    cp_status st;

    if (!need_consult(a, req))
        return CP_OK;
    if (!api_is_centre_admin(a, api_principal(req)))
        return api_respond_error(req, 403, "forbidden", "for the admin of a reading centre");
    arr = json_array();
    c = cp_calloc(1, sizeof(*c));
    if (!arr || !c) {
        json_decref(arr);
        cp_free(c);
        return api_respond_json(req, 503, NULL);
    }
    c->a = a;
    c->arr = arr;
    cp_error_clear(&err);
    st = dispatch_duty_list(a->cfg.disp, duty_one, c, &err);
    cp_free(c);
    if (st != CP_OK) {
        json_decref(arr);
        return api_respond_status(req, st, &err);
    }
    api_audit_change(a, req, AUDIT_QUERY, AUDIT_EXECUTE, "duty", "query", 0, 0, NULL);
    return api_respond_json(req, 200, json_pack("{s:o}", "duty", arr));
}

/* --- live updates ------------------------------------------------------------------------- */

static cp_status handle_events(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const char *after = http_request_header(req, "Last-Event-ID");
    http_events *ev;
    cp_error err;
    cp_status st;

    if (!a->cfg.events)
        return api_respond_error(req, 503, "unavailable", "live updates are not running here");
    api_audit_change(a, req, AUDIT_QUERY, AUDIT_EXECUTE, "events", "query", 0, 0, NULL);
    st = http_respond_events(req, &ev);
    if (st != CP_OK)
        return st;
    cp_error_clear(&err);
    /* A reconnecting EventSource names the last event it got: it gets what followed. */
    if (after == NULL)
        after = http_request_query(req, "last_event_id");
    st = events_subscribe_from(a->cfg.events, api_principal(req), ev, after, &err);
    if (st != CP_OK)
        cp_log_warn("api.events", "request=%s detail=\"%s\"", http_request_id(req),
                    err.detail);
    return CP_OK;
}

cp_status api_orders_register(api_service *a, http_server *s)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        http_handler_fn fn;
    } routes[] = {
        { HTTP_POST, "/api/orders", handle_create },
        { HTTP_GET, "/api/orders", handle_list },
        { HTTP_GET, "/api/orders/{id}", handle_get },
        { HTTP_POST, "/api/orders/{id}/grab", handle_grab },
        { HTTP_POST, "/api/orders/{id}/open", handle_open },
        { HTTP_POST, "/api/orders/{id}/give-back", handle_give_back },
        { HTTP_POST, "/api/orders/{id}/assign", handle_assign },
        { HTTP_POST, "/api/orders/{id}/answer", handle_answer },
        { HTTP_POST, "/api/orders/{id}/cancel", handle_cancel },
        { HTTP_GET, "/api/pool", handle_pool },
        { HTTP_POST, "/api/presence", handle_presence },
        { HTTP_PUT, "/api/duty/{doctor_id}", handle_duty },
        { HTTP_GET, "/api/duty", handle_duty_list },
        { HTTP_GET, "/api/events", handle_events },
    };

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        cp_status st = http_server_route(s, routes[i].methods, routes[i].pattern, 0,
                                         routes[i].fn, a);

        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}
