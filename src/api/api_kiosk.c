/*
 * api_kiosk.c - the self-service print kiosk (docs/api.md, "Kiosk"). A
 * kiosk in a hospital's lobby is a device: an API token (or a user) of that
 * hospital whose only role is kiosk (directory.h). A patient identifies at
 * it with the QR code of their report (the share token, scanned) or with
 * the accession number and their birth date, and gets a short kiosk
 * session listing their released reports at that hospital; the kiosk
 * fetches each PDF, prints it and says so, and the hospital's admin counts
 * the prints per day and kiosk.
 *
 * The answer goes through the share links' own check (film_share_verify,
 * film_share_verify_id), so a wrong birth date is counted by the same
 * throttle in Redis as on the patient's page, per link and per peer: all
 * the patients of one kiosk share its peer, so a run of wrong answers
 * slows that kiosk down as a whole. The share session a right answer
 * opens is ended at once; the kiosk gets its own session instead, in
 * Redis ("kiosk:sess:" and the token's hash -> "<link id> <kind>:<kiosk id>") for
 * KIOSK_SESSION_S, bound to the kiosk that opened it.
 *
 * Every step is audited with the kiosk as the actor (api_audit); the log
 * lines carry ids only, never the patient's.
 */
#include "api/api_kiosk.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api_film_sheet.h"
#include "api/api_internal.h"
#include "api/api_orders.h"
#include "auth/credential.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "film/kiosk.h"

/* A kiosk session's life: long enough to print, short enough to walk away from. */
#define KIOSK_SESSION_S 600

/* Released reports listed for one patient at most. */
#define KIOSK_ITEMS_MAX 50

#define KIOSK_SESSION_PREFIX "ks_"
#define KIOSK_SESSION_HEADER "X-Kiosk-Session"
#define KIOSK_KEY_MAX 320
#define KIOSK_PATH_MAX 4200
#define KIOSK_ACCESSION_MAX 16

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- who may ------------------------------------------------------------------------- */

static bool is_kiosk(const principal *p)
{
    return p && !p->enrol_only && p->roles == ROLE_KIOSK &&
           (p->kind == PRINCIPAL_TOKEN || p->kind == PRINCIPAL_USER);
}

/* The request's kiosk, or NULL after a 403 (or 503 without cloud film). */
static const principal *kiosk_gate(api_service *a, http_request *req)
{
    const principal *p = api_principal(req);

    if (!is_kiosk(p)) {
        api_respond_error(req, 403, "forbidden", "for a print kiosk");
        return NULL;
    }
    if (!a->cfg.film || !a->cfg.kv || !a->cfg.orders) {
        api_respond_error(req, 503, "unavailable", "cloud film is not offered here");
        return NULL;
    }
    return p;
}

/* One audit record of a kiosk's step; the patient id goes to its own field only. */
static void kiosk_audit(api_service *a, http_request *req, audit_event event,
                        audit_action action, audit_outcome outcome, const char *type,
                        const char *object_kind, int64_t object_id, const char *patient_id,
                        int64_t institution_id, const char *detail)
{
    audit_record r;

    memset(&r, 0, sizeof(r));
    r.event = event;
    r.action = action;
    r.outcome = outcome;
    snprintf(r.type, sizeof(r.type), "%s", type);
    snprintf(r.object_kind, sizeof(r.object_kind), "%s", object_kind);
    if (object_id)
        snprintf(r.object_id, sizeof(r.object_id), "%" PRId64, object_id);
    snprintf(r.patient_id, sizeof(r.patient_id), "%.64s", patient_id ? patient_id : "");
    r.institution_id = institution_id;
    snprintf(r.detail, sizeof(r.detail), "%s", detail ? detail : "");
    api_audit(a, req, &r);
}

/* --- the kiosk session ------------------------------------------------------------------ */

static cp_status session_key(api_service *a, const char *session, char *key, size_t cap)
{
    char hash[65];

    credential_token_hash(session, hash);
    return kv_key(a->cfg.kv, key, cap, "kiosk:sess", hash);
}

/* A new session for link_id at kiosk p; out gets its token. */
static cp_status session_open(api_service *a, const principal *p, int64_t link_id,
                              char out[FILM_SHARE_TOKEN_SIZE], cp_error *err)
{
    char key[KIOSK_KEY_MAX], value[64], ttl[16];
    cp_status st;

    st = credential_token(KIOSK_SESSION_PREFIX, out, FILM_SHARE_TOKEN_SIZE);
    if (st == CP_OK)
        st = session_key(a, out, key, sizeof(key));
    if (st != CP_OK)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "kiosk: no session token");
    snprintf(value, sizeof(value), "%" PRId64 " %d:%" PRId64, link_id, (int)p->kind, p->id);
    snprintf(ttl, sizeof(ttl), "%d", KIOSK_SESSION_S);
    return kv_commandv(a->cfg.kv, NULL, err, "SET", key, value, "EX", ttl, (char *)NULL);
}

/*
 * The link of the request's kiosk session, when the session is this
 * kiosk's and the link still valid; false after a 404 (or 503).
 */
static bool session_link(api_service *a, http_request *req, const principal *p,
                         film_share_link *link)
{
    const char *session = http_request_header(req, KIOSK_SESSION_HEADER);
    char key[KIOSK_KEY_MAX], mine[48];
    kv_reply *reply = NULL;
    long long link_id = 0;
    bool ok = false;
    cp_error err;

    cp_error_clear(&err);
    if (!session || strncmp(session, KIOSK_SESSION_PREFIX, strlen(KIOSK_SESSION_PREFIX)) != 0 ||
        strlen(session) >= FILM_SHARE_TOKEN_SIZE ||
        session_key(a, session, key, sizeof(key)) != CP_OK) {
        api_respond_error(req, 404, "not_found", "no such kiosk session");
        return false;
    }
    if (kv_commandv(a->cfg.kv, &reply, &err, "GET", key, (char *)NULL) != CP_OK) {
        api_respond_error(req, 503, "unavailable", "try again later");
        return false;
    }
    snprintf(mine, sizeof(mine), "%d:%" PRId64, (int)p->kind, p->id);
    if (reply->type == KV_REPLY_STRING) {
        char who[48] = "";

        if (sscanf(reply->str, "%lld %47s", &link_id, who) == 2 &&
            strcmp(who, mine) == 0)
            ok = true;
    }
    kv_reply_free(reply);
    if (ok && film_share_get(a->cfg.film, link_id, link, &err) == CP_OK)
        ok = link->revoked_us == 0 && link->expires_us > now_us();
    else
        ok = false;
    if (!ok)
        api_respond_error(req, 404, "not_found", "no such kiosk session");
    return ok;
}

/* --- what there is to print -------------------------------------------------------------- */

typedef struct item_walk {
    api_service *a;
    const principal *p;
    const film_share_link *link;
    order orders[KIOSK_ITEMS_MAX];
    size_t count;
} item_walk;

static cp_status item_one(void *ctx, const order *o)
{
    item_walk *w = ctx;

    if (strcmp(o->issuer, w->link->issuer) != 0 || !api_own_institution(w->p, o->requesting_id))
        return CP_OK;
    if (w->count == KIOSK_ITEMS_MAX)
        return CP_ERR_STOPPED;
    w->orders[w->count++] = *o;
    return CP_OK;
}

static cp_status study_date_one(void *ctx, const index_row *row)
{
    snprintf(ctx, INDEX_DA_MAX + 1, "%s", row->rec.study.date);
    return CP_ERR_STOPPED;
}

static void study_date(api_service *a, const char *uid, char out[INDEX_DA_MAX + 1])
{
    index_term term = { "StudyInstanceUID", uid };
    index_query_spec spec;

    out[0] = '\0';
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_STUDY;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = 1;
    if (a->cfg.idx)
        index_query(a->cfg.idx, &spec, study_date_one, out, NULL);
}

static void report_path(const api_service *a, int64_t order_id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/order-%" PRId64 ".pdf", a->cfg.film_dir ? a->cfg.film_dir : "",
             order_id);
}

static bool file_exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Bytes of a film PDF read to count its pages at most (8 sheets are far less). */
#define KIOSK_PDF_READ_MAX (64u << 20)

static void film_path(const api_service *a, int64_t order_id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/order-%" PRId64 "-film.pdf", a->cfg.film_dir ? a->cfg.film_dir : "",
             order_id);
}

/* Pages of a PDF file: its /Type /Page objects (not /Pages); 0 when unreadable. */
static int pdf_pages(const char *path)
{
    static const char key[] = "/Type /Page";
    FILE *f = fopen(path, "rb");
    cp_buf b = CP_BUF_INIT;
    char chunk[65536];
    size_t n;
    int pages = 0;

    if (!f)
        return 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < KIOSK_PDF_READ_MAX)
        if (cp_buf_append(&b, chunk, n) != CP_OK)
            break;
    fclose(f);
    for (const char *p = (const char *)b.data, *end = p + b.len; p && p < end;) {
        p = memmem(p, (size_t)(end - p), key, sizeof(key) - 1);
        if (!p)
            break;
        p += sizeof(key) - 1;
        if (p == end || (*p != 's' && *p != 'L'))
            pages++;
    }
    cp_buf_free(&b);
    return pages;
}

/*
 * The order's film PDF: the one kept at release, else made now (and kept)
 * through api_film_sheet_write; false when there is none to be had.
 */
static bool film_file(api_service *a, int64_t order_id, char *path, size_t cap)
{
    cp_error err;

    if (!a->cfg.film_dir)
        return false;
    film_path(a, order_id, path, cap);
    if (file_exists(path))
        return true;
    cp_error_clear(&err);
    if (api_film_sheet_write(a, order_id, NULL, path, &err) != CP_OK) {
        cp_log_info("api.kiosk_film", "order=%" PRId64 " status=%s", order_id,
                    cp_status_name(err.status));
        return false;
    }
    return file_exists(path);
}

/* The patient's released reports asked for by this kiosk's institution, newest first. */
static cp_status items_json(api_service *a, const principal *p, const film_share_link *link,
                            json_t **out, cp_error *err)
{
    static const order_state released[] = { ORDER_RELEASED };
    item_walk *w = cp_calloc(1, sizeof(*w));
    order_filter f;
    json_t *arr = json_array();
    cp_status st;

    *out = NULL;
    if (!w || !arr) {
        cp_free(w);
        json_decref(arr);
        return CP_ERR_NOMEM;
    }
    w->a = a;
    w->p = p;
    w->link = link;
    memset(&f, 0, sizeof(f));
    f.states = released;
    f.state_count = 1;
    f.patient_id = link->patient_id;
    f.limit = 1000;
    st = order_list(a->cfg.orders, &f, item_one, w, err);
    if (st == CP_ERR_STOPPED)
        st = CP_OK;
    for (size_t i = w->count; st == CP_OK && i-- > 0;) {
        const order *o = &w->orders[i];
        char date[INDEX_DA_MAX + 1], path[KIOSK_PATH_MAX], film[KIOSK_PATH_MAX];
        int64_t printed = 0;
        int pages = 0;
        json_t *j;

        study_date(a, o->study_uid, date);
        if (film_file(a, o->id, film, sizeof(film)))
            pages = pdf_pages(film);
        report_path(a, o->id, path, sizeof(path));
        st = film_kiosk_count(a->cfg.db_path, o->id, &printed, err);
        if (st != CP_OK)
            break;
        j = json_pack("{s:I, s:s, s:s, s:s, s:b, s:i, s:I}", "order_id", (json_int_t)o->id,
                      "study_date", date, "modality", o->modality, "body_part", o->body_part,
                      "report", a->cfg.film_dir && file_exists(path),
                      "film_pages", pages, "printed", (json_int_t)printed);
        if (!j || json_array_append_new(arr, j) != 0)
            st = CP_ERR_NOMEM;
    }
    cp_free(w);
    if (st != CP_OK) {
        json_decref(arr);
        return st;
    }
    *out = arr;
    return CP_OK;
}

/* --- identifying ----------------------------------------------------------------------------- */

typedef struct accession_hit {
    char study_uid[INDEX_UID_MAX + 1];
} accession_hit;

static cp_status accession_one(void *ctx, const index_row *row)
{
    accession_hit *h = ctx;

    memcpy(h->study_uid, row->rec.study.uid, sizeof(h->study_uid));
    return CP_ERR_STOPPED;
}

static cp_status link_one(void *ctx, const film_share_link *l)
{
    film_share_link *best = ctx;

    /* The newest link staff made with the birth date: what the patient was given. */
    if (l->parent_id != 0 || l->deidentify || l->factor != FILM_SHARE_FACTOR_BIRTH_DATE)
        return CP_OK;
    *best = *l;
    return CP_ERR_STOPPED;
}

/*
 * The link behind an accession number of the kiosk's institution: its id,
 * or 0 when there is none (which film_share_verify_id counts as wrong).
 */
static int64_t accession_link(api_service *a, const principal *p, const char *accession)
{
    int64_t ids[64];
    size_t count = 0;
    index_term term = { "AccessionNumber", accession };
    index_query_spec spec;
    accession_hit hit = { "" };
    film_share_filter f;
    film_share_link best;

    /* One accession exactly: no wildcard or range matching. */
    if (!a->cfg.idx || accession[0] == '\0' || strpbrk(accession, "*?\\"))
        return 0;
    /* A kiosk has no study rights (policy.h): its own subtree is in its grants all the same. */
    count = p->own_grant_count && p->own_grant_count < p->grant_count ? p->own_grant_count
                                                                       : p->grant_count;
    if (count > sizeof(ids) / sizeof(ids[0]))
        count = sizeof(ids) / sizeof(ids[0]);
    for (size_t i = 0; i < count; i++)
        ids[i] = p->grants[i].institution_id;
    if (count == 0)
        return 0;
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_STUDY;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = 1;
    spec.institutions = ids;
    spec.institution_count = count;
    if (index_query(a->cfg.idx, &spec, accession_one, &hit, NULL) != CP_OK ||
        hit.study_uid[0] == '\0')
        return 0;
    memset(&f, 0, sizeof(f));
    memset(&best, 0, sizeof(best));
    f.study_uid = hit.study_uid;
    f.valid_only = true;
    if (film_share_list(a->cfg.film, &f, link_one, &best, NULL) != CP_OK)
        return 0;
    return best.id;
}

static cp_status respond_verdict(api_service *a, http_request *req, const film_share_result *res,
                                 int64_t institution_id)
{
    char retry[16], detail[64];

    snprintf(detail, sizeof(detail), "{\"failures\":%u}", res->failures);
    kiosk_audit(a, req, AUDIT_USER_AUTHENTICATION, AUDIT_EXECUTE, AUDIT_MINOR_FAILURE,
                res->verdict == FILM_SHARE_WRONG ? "kiosk_identify_refused"
                                                 : "kiosk_identify_throttled",
                "share_link", 0, NULL, institution_id, detail);
    if (res->verdict == FILM_SHARE_WAIT || res->verdict == FILM_SHARE_BLOCKED) {
        snprintf(retry, sizeof(retry), "%u", res->retry_after_s ? res->retry_after_s : 1);
        http_response_header(req, "Retry-After", retry);
        return api_respond_json(req, 429, json_pack("{s:s, s:i, s:s, s:i}", "error",
                                                    "too many wrong answers", "status", 429,
                                                    "reason", "throttled", "retry_after",
                                                    (int)res->retry_after_s));
    }
    return api_respond_json(req, 403, json_pack("{s:s, s:i, s:s, s:i}", "error",
                                                "not found, or the answer is not right",
                                                "status", 403, "reason", "wrong_answer",
                                                "failures", (int)res->failures));
}

static cp_status identify_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = kiosk_gate(a, req);
    const char *token, *accession, *answer;
    char session[FILM_SHARE_TOKEN_SIZE], expires[32], detail[96];
    film_share_result res;
    film_share_link link;
    json_t *items = NULL;
    cp_error err;
    cp_status st;

    if (!p)
        return CP_OK;
    if (!json_is_object(body) ||
        !api_json_string(body, "token", FILM_SHARE_TOKEN_SIZE, false, &token) ||
        !api_json_string(body, "accession", KIOSK_ACCESSION_MAX, false, &accession) ||
        !api_json_string(body, "answer", SHARE_ANSWER_MAX, false, &answer) ||
        (!token && !(accession && answer)) || (token && accession))
        return api_respond_error(req, 400, "invalid",
                                 "token (an answer optional), or accession and answer");
    cp_error_clear(&err);
    memset(&res, 0, sizeof(res));
    if (token && !answer) {
        /* The paper in hand is the proof, as when its QR code is scanned at home. */
        st = film_share_open(a->cfg.film, token, http_request_peer(req), &link, &err);
        res.verdict = FILM_SHARE_VERIFIED;
    } else if (token) {
        st = film_share_verify(a->cfg.film, token, answer, http_request_peer(req), &res, &err);
    } else {
        st = film_share_verify_id(a->cfg.film, accession_link(a, p, accession), answer,
                                  http_request_peer(req), &res, &err);
    }
    if (st == CP_ERR_UNAVAILABLE)
        return api_respond_error(req, 503, "unavailable", "try again later");
    if (st == CP_OK && res.verdict != FILM_SHARE_VERIFIED)
        return respond_verdict(a, req, &res, p->institution_id);
    if (st == CP_OK && answer) {
        /* The kiosk has its own session: the page's is not needed. */
        film_share_session_end(a->cfg.film, res.session, &err);
        explicit_bzero(res.session, sizeof(res.session));
        link = res.link;
    }
    /* A doctor's link, a de-identified one or another hospital's prints nothing here. */
    if (st != CP_OK || link.parent_id != 0 || link.deidentify ||
        !api_own_institution(p, link.institution_id)) {
        kiosk_audit(a, req, AUDIT_USER_AUTHENTICATION, AUDIT_EXECUTE, AUDIT_MINOR_FAILURE,
                    "kiosk_identify_refused", "share_link", st == CP_OK ? link.id : 0, NULL,
                    p->institution_id, "{\"reason\":\"no_link\"}");
        return api_respond_error(req, 404, "not_found", "nothing to print here");
    }

    st = items_json(a, p, &link, &items, &err);
    if (st == CP_OK)
        st = session_open(a, p, link.id, session, &err);
    if (st != CP_OK) {
        json_decref(items);
        return api_respond_status(req, st, &err);
    }
    snprintf(detail, sizeof(detail), "{\"by\":\"%s\",\"items\":%zu}",
             token ? "token" : "accession", json_array_size(items));
    kiosk_audit(a, req, AUDIT_USER_AUTHENTICATION, AUDIT_EXECUTE, AUDIT_SUCCESS,
                "kiosk_identified", "share_link", link.id, link.patient_id,
                link.institution_id, detail);
    cp_log_info("api.kiosk_identified", "kiosk=%" PRId64 " link=%" PRId64 " items=%zu", p->id,
                link.id, json_array_size(items));
    api_format_time(now_us() + (int64_t)KIOSK_SESSION_S * 1000000, expires);
    http_response_header(req, "Cache-Control", "no-store");
    st = api_respond_json(req, 200, json_pack("{s:s, s:s, s:o}", "session", session,
                                              "expires", expires, "items", items));
    explicit_bzero(session, sizeof(session));
    return st;
}

/* POST /api/kiosk/identify */
static cp_status handle_identify(http_request *req, void *ctx)
{
    if (!kiosk_gate(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, identify_body);
}

/* GET /api/kiosk/items: the list again (after printing). */
static cp_status handle_items(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = kiosk_gate(a, req);
    film_share_link link;
    json_t *items = NULL;
    cp_error err;
    cp_status st;

    if (!p || !session_link(a, req, p, &link))
        return CP_OK;
    cp_error_clear(&err);
    st = items_json(a, p, &link, &items, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, json_pack("{s:o}", "items", items));
}

/*
 * The order of the path, when it is a released report of the session's
 * patient asked for by the kiosk's institution; false after a 404.
 */
static bool session_order(api_service *a, http_request *req, const principal *p,
                          film_share_link *link, order *o)
{
    int64_t id;
    cp_error err;

    if (!session_link(a, req, p, link) || !api_param_id(req, &id))
        return false;
    cp_error_clear(&err);
    if (order_get(a->cfg.orders, id, o, &err) != CP_OK || o->state != ORDER_RELEASED ||
        strcmp(o->patient_id, link->patient_id) != 0 || strcmp(o->issuer, link->issuer) != 0 ||
        !api_own_institution(p, o->requesting_id)) {
        api_respond_error(req, 404, "not_found", "no such item");
        return false;
    }
    return true;
}

static cp_status respond_file(http_request *req, const char *path, const char *name)
{
    char disposition[96];
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0)
            close(fd);
        return api_respond_error(req, 404, "not_found", "there is no such PDF");
    }
    snprintf(disposition, sizeof(disposition), "inline; filename=\"%s\"", name);
    http_response_header(req, "Cache-Control", "no-store");
    http_response_header(req, "Content-Disposition", disposition);
    return http_respond_fd(req, 200, "application/pdf", fd, 0, (uint64_t)sb.st_size);
}

/* GET /api/kiosk/items/{id}/report.pdf */
static cp_status handle_report_pdf(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = kiosk_gate(a, req);
    char path[KIOSK_PATH_MAX];
    film_share_link link;
    order o;

    if (!p || !session_order(a, req, p, &link, &o))
        return CP_OK;
    if (!a->cfg.film_dir)
        return api_respond_error(req, 404, "not_found", "there is no such PDF");
    report_path(a, o.id, path, sizeof(path));
    kiosk_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_READ, AUDIT_SUCCESS, "kiosk_report_read",
                "order", o.id, o.patient_id, o.requesting_id, NULL);
    return respond_file(req, path, "report.pdf");
}

/* GET /api/kiosk/items/{id}/film.pdf: the electronic film (api_film_sheet.h). */
static cp_status handle_film_pdf(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = kiosk_gate(a, req);
    char path[KIOSK_PATH_MAX];
    film_share_link link;
    order o;

    if (!p || !session_order(a, req, p, &link, &o))
        return CP_OK;
    if (!film_file(a, o.id, path, sizeof(path)))
        return api_respond_error(req, 404, "not_found", "there is no film for this report");
    kiosk_audit(a, req, AUDIT_INSTANCES_ACCESSED, AUDIT_READ, AUDIT_SUCCESS, "kiosk_film_read",
                "order", o.id, o.patient_id, o.requesting_id, NULL);
    return respond_file(req, path, "film.pdf");
}

static cp_status printed_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = kiosk_gate(a, req);
    const char *what;
    char detail[64];
    film_share_link link;
    film_kiosk_print pr;
    int64_t pages = 1, count = 0;
    bool has_pages;
    order o;
    cp_error err;
    cp_status st;

    if (!p)
        return CP_OK;
    if (!json_is_object(body) || !api_json_string(body, "what", 8, true, &what) ||
        (strcmp(what, "report") != 0 && strcmp(what, "film") != 0) ||
        !api_json_int(body, "pages", 1, FILM_KIOSK_PAGES_MAX, &pages, &has_pages))
        return api_respond_error(req, 400, "invalid",
                                 "what is report or film; pages 1 to 200");
    if (!session_order(a, req, p, &link, &o))
        return CP_OK;
    memset(&pr, 0, sizeof(pr));
    pr.institution_id = p->institution_id;
    pr.kiosk_kind = (int)p->kind;
    pr.kiosk_id = p->id;
    snprintf(pr.kiosk, sizeof(pr.kiosk), "%s", p->name);
    pr.order_id = o.id;
    pr.film = strcmp(what, "film") == 0;
    pr.pages = (int)pages;
    cp_error_clear(&err);
    st = film_kiosk_record(a->cfg.db_path, &pr, &err);
    if (st == CP_OK)
        st = film_kiosk_count(a->cfg.db_path, o.id, &count, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    snprintf(detail, sizeof(detail), "{\"what\":\"%s\",\"pages\":%d}", what, pr.pages);
    kiosk_audit(a, req, AUDIT_EXPORT, AUDIT_CREATE, AUDIT_SUCCESS, "kiosk_printed", "order",
                o.id, o.patient_id, o.requesting_id, detail);
    cp_log_info("api.kiosk_printed", "kiosk=%" PRId64 " order=%" PRId64 " what=%s pages=%d",
                p->id, o.id, what, pr.pages);
    return api_respond_json(req, 201, json_pack("{s:I, s:I}", "id", (json_int_t)pr.id,
                                                "printed", (json_int_t)count));
}

/* POST /api/kiosk/items/{id}/printed */
static cp_status handle_printed(http_request *req, void *ctx)
{
    if (!kiosk_gate(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, printed_body);
}

/* POST /api/kiosk/logout: the patient is done; the session goes. */
static cp_status handle_logout(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = kiosk_gate(a, req);
    const char *session = http_request_header(req, KIOSK_SESSION_HEADER);
    char key[KIOSK_KEY_MAX];
    cp_error err;

    if (!p)
        return CP_OK;
    cp_error_clear(&err);
    if (session && strlen(session) < FILM_SHARE_TOKEN_SIZE &&
        session_key(a, session, key, sizeof(key)) == CP_OK)
        kv_commandv(a->cfg.kv, NULL, &err, "DEL", key, (char *)NULL);
    return api_respond_empty(req);
}

/* --- the counts ------------------------------------------------------------------------------ */

typedef struct days_walk {
    const principal *p;
    json_t *rows;
    cp_buf csv;
    bool as_csv;
} days_walk;

/* A CSV field, quoted when it needs it (RFC 4180). */
static cp_status csv_field(cp_buf *b, const char *s, bool last)
{
    cp_status st = CP_OK;

    if (strpbrk(s, ",\"\r\n")) {
        st = cp_buf_append(b, "\"", 1);
        for (const char *c = s; st == CP_OK && *c; c++)
            st = *c == '"' ? cp_buf_append(b, "\"\"", 2) : cp_buf_append(b, c, 1);
        if (st == CP_OK)
            st = cp_buf_append(b, "\"", 1);
    } else {
        st = cp_buf_append(b, s, strlen(s));
    }
    if (st == CP_OK)
        st = cp_buf_append(b, last ? "\r\n" : ",", last ? 2 : 1);
    return st;
}

static cp_status day_one(void *ctx, const film_kiosk_day *d)
{
    days_walk *w = ctx;
    const char *kind = d->kiosk_kind == PRINCIPAL_TOKEN ? "token" : "user";
    char num[5][24];
    json_t *j;
    cp_status st = CP_OK;

    if (w->p->kind != PRINCIPAL_SERVICE && !api_manages(w->p, d->institution_id))
        return CP_OK;
    if (!w->as_csv) {
        j = json_pack("{s:s, s:I, s:s, s:I, s:s, s:I, s:I, s:I}", "day", d->day,
                      "institution_id", (json_int_t)d->institution_id, "kiosk_kind", kind,
                      "kiosk_id", (json_int_t)d->kiosk_id, "kiosk", d->kiosk,
                      "reports", (json_int_t)d->reports, "films", (json_int_t)d->films,
                      "pages", (json_int_t)d->pages);
        return j && json_array_append_new(w->rows, j) == 0 ? CP_OK : CP_ERR_NOMEM;
    }
    snprintf(num[0], sizeof(num[0]), "%" PRId64, d->institution_id);
    snprintf(num[1], sizeof(num[1]), "%" PRId64, d->kiosk_id);
    snprintf(num[2], sizeof(num[2]), "%" PRId64, d->reports);
    snprintf(num[3], sizeof(num[3]), "%" PRId64, d->films);
    snprintf(num[4], sizeof(num[4]), "%" PRId64, d->pages);
    st = csv_field(&w->csv, d->day, false);
    if (st == CP_OK)
        st = csv_field(&w->csv, num[0], false);
    if (st == CP_OK)
        st = csv_field(&w->csv, kind, false);
    if (st == CP_OK)
        st = csv_field(&w->csv, num[1], false);
    if (st == CP_OK)
        st = csv_field(&w->csv, d->kiosk, false);
    for (int i = 2; st == CP_OK && i < 5; i++)
        st = csv_field(&w->csv, num[i], i == 4);
    return st;
}

/* GET /api/kiosk/prints?from&to[&format=csv]: for the hospital's admin. */
static cp_status handle_prints(http_request *req, void *ctx)
{
    static const char header[] = "day,institution_id,kiosk_kind,kiosk_id,kiosk,reports,films,"
                                 "pages\r\n";
    api_service *a = ctx;
    const principal *p = api_principal(req);
    const char *from = http_request_query(req, "from");
    const char *to = http_request_query(req, "to");
    const char *format = http_request_query(req, "format");
    int64_t from_us = 0, to_us = 0;
    days_walk w;
    cp_error err;
    cp_status st;

    if (!p || (p->kind != PRINCIPAL_SERVICE &&
               !(p->kind == PRINCIPAL_USER && (p->roles & ROLE_INSTITUTION_ADMIN))))
        return api_respond_error(req, 403, "forbidden", "for the admin of the institution");
    if (!a->cfg.db_path)
        return api_respond_error(req, 503, "unavailable", "prints are not kept here");
    if ((from && !api_parse_time(from, false, &from_us)) ||
        (to && !api_parse_time(to, true, &to_us)))
        return api_respond_error(req, 400, "invalid", "from and to are times or dates");
    /* to is inclusive (a bare date means its last microsecond); the store wants it open. */
    if (to_us)
        to_us++;
    memset(&w, 0, sizeof(w));
    w.p = p;
    w.as_csv = format && strcmp(format, "csv") == 0;
    cp_buf_init(&w.csv);
    w.rows = w.as_csv ? NULL : json_array();
    if (!w.as_csv && !w.rows)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = w.as_csv ? cp_buf_append(&w.csv, header, strlen(header)) : CP_OK;
    if (st == CP_OK)
        st = film_kiosk_days(a->cfg.db_path, from_us, to_us, day_one, &w, &err);
    if (st != CP_OK) {
        json_decref(w.rows);
        cp_buf_free(&w.csv);
        return api_respond_status(req, st, &err);
    }
    api_audit_change(a, req, AUDIT_QUERY, AUDIT_EXECUTE, "kiosk_prints", "query", 0, 0, NULL);
    if (!w.as_csv)
        return api_respond_json(req, 200, json_pack("{s:o}", "days", w.rows));
    st = http_respond_buffer(req, 200, "text/csv; charset=utf-8", w.csv.data, w.csv.len);
    cp_buf_free(&w.csv);
    return st;
}

bool api_kiosk_route(const http_request *req)
{
    const char *path = http_request_path(req);

    return path && (strncmp(path, "/api/kiosk/", strlen("/api/kiosk/")) == 0 ||
                    strcmp(path, "/api/me") == 0);
}

cp_status api_kiosk_register(api_service *a, http_server *s)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        http_handler_fn fn;
    } routes[] = {
        { HTTP_POST, "/api/kiosk/identify", handle_identify },
        { HTTP_GET, "/api/kiosk/items", handle_items },
        { HTTP_GET, "/api/kiosk/items/{id}/report.pdf", handle_report_pdf },
        { HTTP_GET, "/api/kiosk/items/{id}/film.pdf", handle_film_pdf },
        { HTTP_POST, "/api/kiosk/items/{id}/printed", handle_printed },
        { HTTP_POST, "/api/kiosk/logout", handle_logout },
        { HTTP_GET, "/api/kiosk/prints", handle_prints },
    };

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        cp_status st = http_server_route(s, routes[i].methods, routes[i].pattern, 0,
                                         routes[i].fn, a);

        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}
