/*
 * api_film.c - cloud film over HTTP (docs/api.md, "Cloud film"). When a
 * report is released, the study gets a share link (the patient's birth
 * date as second factor) and a printable report PDF whose QR code holds
 * the link; the PDF is kept in the film directory for the clinic to print
 * (GET /api/orders/{id}/film) and stored into the study as a DICOM
 * Encapsulated PDF (PS3.3 A.45.1). The token exists only in that QR code.
 *
 * The patient's page talks to the public routes under /film/api/{token}:
 * a right answer opens a share session held in the cookie cloudpacs_film,
 * bound to the token of the path, and every later request is checked
 * through film_share_session_check, so that a revoked or expired link
 * closes at once. A bad, expired or revoked token, or a session that does
 * not belong to it, all get the same 404. Pictures go through the
 * rendering pipeline of DICOMweb (PS3.18 10.4.1.1.3) by api_film_render_fn.
 */
#include "api/api_film.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api_film_download.h"
#include "api/api_film_sheet.h"
#include "api/api_internal.h"
#include "api/api_orders.h"
#include "auth/credential.h"
#include "core/alloc.h"
#include "core/log.h"
#include "api/api_film_file.h"
#include "film/deident.h"
#include "film/pdf.h"
#include "http/static.h"

#define FILM_COOKIE "cloudpacs_film"

/* Hex digits of the token's hash kept beside the session in the cookie. */
#define FILM_BIND_HEX 16

#define FILM_PATH_MAX 4200
#define FILM_DAY_US (86400LL * 1000000)

/* How long a share session's look at a series stays one audit record (first_look). */
#define FILM_SEEN_TTL "3600"

/* Studies a patient link lists at most. */
#define FILM_STUDIES_MAX 200

static const char film_not_found[] = "no such link";

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void api_set_film_render(api_service *a, api_film_render_fn fn, void *ctx)
{
    a->film_render = fn;
    a->film_render_ctx = ctx;
}

/* --- shared steps ---------------------------------------------------------------- */

static cp_status respond_gone(http_request *req)
{
    return api_respond_error(req, 404, "not_found", film_not_found);
}

static void pdf_path(const api_service *a, int64_t order_id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/order-%" PRId64 ".pdf", a->cfg.film_dir, order_id);
}

static cp_status study_row_one(void *ctx, const index_row *row)
{
    *(index_row *)ctx = *row;
    return CP_ERR_STOPPED;
}

/* The study's row in the index; false when it is not there. */
static bool study_row(api_service *a, const char *study_uid, index_row *row)
{
    index_term term = { "StudyInstanceUID", study_uid };
    index_query_spec spec;

    memset(row, 0, sizeof(*row));
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_STUDY;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = 1;
    if (!a->cfg.idx || index_query(a->cfg.idx, &spec, study_row_one, row, NULL) != CP_OK)
        return false;
    return row->rec.study.uid[0] != '\0';
}

/* The name in the patient's own script: the ideographic group, else the alphabetic. */
static void patient_name(const index_person_name *n, char *out, size_t cap)
{
    const char *src = n->ideographic[0] ? n->ideographic : n->alphabetic;
    size_t i;

    for (i = 0; src[i] && i + 1 < cap; i++)
        out[i] = src[i] == '^' ? ' ' : src[i];
    out[i] = '\0';
}

static void user_name(api_service *a, int64_t id, char *out, size_t cap)
{
    directory_user u;
    cp_error err;

    out[0] = '\0';
    cp_error_clear(&err);
    if (id != 0 && directory_user_get(a->cfg.dir, id, &u, &err) == CP_OK)
        snprintf(out, cap, "%s", u.display_name[0] ? u.display_name : u.username);
}

static void institution_name(api_service *a, int64_t id, char *out, size_t cap)
{
    directory_institution inst;
    cp_error err;

    out[0] = '\0';
    cp_error_clear(&err);
    if (id != 0 && directory_institution_get(a->cfg.dir, id, &inst, &err) == CP_OK)
        snprintf(out, cap, "%s", inst.name);
}

/* Writes len bytes to path whole or not at all. */
static bool write_file(const char *path, const void *data, size_t len)
{
    char tmp[FILM_PATH_MAX + 8];
    FILE *f;
    bool ok;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "wb");
    if (!f)
        return false;
    ok = fwrite(data, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok)
        unlink(tmp);
    return ok;
}

/* --- on release ---------------------------------------------------------------------- */

typedef struct release_names {
    char institution[DIRECTORY_NAME_MAX + 1];
    char reading[DIRECTORY_NAME_MAX + 1];
    char author[DIRECTORY_NAME_MAX + 1];
    char reviewer[DIRECTORY_NAME_MAX + 1];
    char patient[INDEX_PN_GROUP_MAX + 1];
} release_names;

static void fill_pdf(api_service *a, const order *o, const report_version *v,
                     const index_row *row, release_names *n, pdf_report *r)
{
    const index_instance_record *rec = &row->rec;

    institution_name(a, o->requesting_id, n->institution, sizeof(n->institution));
    institution_name(a, o->reading_id, n->reading, sizeof(n->reading));
    user_name(a, v->author_id, n->author, sizeof(n->author));
    user_name(a, v->reviewer_id, n->reviewer, sizeof(n->reviewer));
    patient_name(&rec->patient.name, n->patient, sizeof(n->patient));

    memset(r, 0, sizeof(*r));
    r->institution = n->institution;
    r->patient_name = n->patient;
    r->patient_id = rec->patient.id;
    r->sex = rec->patient.sex;
    r->birth_date = rec->patient.birth_date;
    r->accession = rec->study.accession;
    r->study_date = rec->study.date;
    r->modality = o->modality;
    r->body_part = o->body_part;
    r->study_description = rec->study.description;
    r->reading_institution = n->reading[0] ? n->reading : NULL;
    r->findings = v->findings;
    r->impression = v->impression;
    r->critical = v->critical;
    r->author = n->author;
    r->reviewer = n->reviewer;
    r->written_us = v->written_us;
    r->reviewed_us = v->reviewed_us;
    r->released_us = v->released_us;
    r->signature = v->signature;
    r->qr_note = "验证: 出生日期 / Verify with: birth date";
}

/* The side, in pixels, a key image of the report PDF is rendered within. */
#define FILM_KEY_IMAGE_PX 384

/* The report PDF's key images, rendered, with their captions. */
typedef struct key_images {
    api_film_key_image shot[PDF_IMAGES_MAX];
    pdf_image pdf[PDF_IMAGES_MAX];
    char caption[PDF_IMAGES_MAX][96];
    size_t count;
} key_images;

/* The study's key images into k and r (none when they cannot be had); key_images_free after. */
static void key_images_fill(api_service *a, const char *study_uid, key_images *k, pdf_report *r)
{
    k->count = api_film_sheet_key_images(a, study_uid, FILM_KEY_IMAGE_PX, k->shot,
                                         PDF_IMAGES_MAX);
    for (size_t i = 0; i < k->count; i++) {
        const sheet_image *img = &k->shot[i].img;

        snprintf(k->caption[i], sizeof(k->caption[i]),
                 "序列 %" PRId64 " 图像 %" PRId64 " / Series %" PRId64 " Image %" PRId64,
                 k->shot[i].series_number, k->shot[i].instance_number,
                 k->shot[i].series_number, k->shot[i].instance_number);
        k->pdf[i] = (pdf_image){ img->width, img->height, img->channels, img->data,
                                 k->caption[i] };
    }
    r->images = k->pdf;
    r->image_count = k->count;
}

static void key_images_free(key_images *k)
{
    for (size_t i = 0; i < k->count; i++)
        sheet_image_clear(&k->shot[i].img);
    k->count = 0;
}

/* The link's URL for the QR code; false when it cannot be made. */
static bool share_url(api_service *a, http_request *req, const char *token, char *out,
                      size_t cap)
{
    char base[SHARE_URL_MAX];

    if (a->cfg.film_base_url && a->cfg.film_base_url[0])
        snprintf(base, sizeof(base), "%s", a->cfg.film_base_url);
    else if (http_request_base_url(req, base, sizeof(base)) != CP_OK)
        return false;
    return film_share_url(base, token, out, cap) == CP_OK;
}

/*
 * The second factor the institution asks for its released reports' links:
 * [film.<its code>] factor, else [film] factor, else the birth date.
 */
static film_share_factor release_factor(api_service *a, int64_t institution_id)
{
    char section[DIRECTORY_CODE_MAX + 8];
    directory_institution inst;
    const char *name;
    film_share_factor f;
    cp_error err;

    if (!a->cfg.film_factors)
        return FILM_SHARE_FACTOR_BIRTH_DATE;
    name = cp_config_get(a->cfg.film_factors, "film", "factor", "birth_date");
    cp_error_clear(&err);
    if (a->cfg.dir && directory_institution_get(a->cfg.dir, institution_id, &inst, &err) == CP_OK) {
        snprintf(section, sizeof(section), "film.%s", inst.code);
        name = cp_config_get(a->cfg.film_factors, section, "factor", name);
    }
    f = film_share_factor_parse(name);
    return f ? f : FILM_SHARE_FACTOR_BIRTH_DATE;
}

/*
 * The link (of scope: the study, or the patient's studies here) and the PDF
 * of a released report; false (after logging why) when not made. The link
 * asks for the last four digits of the patient's phone when the
 * institution wants that and the order has them; else (logged when the
 * phone was wanted) for the birth date.
 */
static bool film_make(api_service *a, http_request *req, const order *o,
                      const report_version *v, film_share_scope scope)
{
    const principal *p = api_principal(req);
    char token[FILM_SHARE_TOKEN_SIZE], url[SHARE_URL_MAX], path[FILM_PATH_MAX];
    char sop[INDEX_UID_MAX + 1];
    int days = a->cfg.film_link_days > 0 ? a->cfg.film_link_days : 365;
    film_share_request fr;
    release_names names;
    key_images keys = { .count = 0 };
    pdf_report r;
    index_row row;
    cp_buf pdf = CP_BUF_INIT;
    cp_error err;

    bool made = false;

    if (!a->cfg.film || !a->cfg.film_dir)
        return false;
    cp_error_clear(&err);
    if (!study_row(a, o->study_uid, &row)) {
        cp_log_warn("api.film_release", "order=%" PRId64 " detail=\"%s\"", o->id,
                    "the study is not in the index");
        return false;
    }

    memset(&fr, 0, sizeof(fr));
    fr.scope = scope;
    fr.study_uid = o->study_uid;
    fr.issuer = row.rec.patient.issuer;
    fr.patient_id = row.rec.patient.id;
    fr.institution_id = row.institution_id ? row.institution_id : o->requesting_id;
    /* A link made by staff may be shared on: the one who released it stands for it. */
    fr.created_by = p && p->kind == PRINCIPAL_USER ? p->id
                    : o->reviewer_id ? o->reviewer_id : o->doctor_id;
    fr.expires_us = now_us() + (int64_t)days * FILM_DAY_US;
    fr.factor = FILM_SHARE_FACTOR_BIRTH_DATE;
    fr.factor_answer = row.rec.patient.birth_date;
    if (release_factor(a, fr.institution_id) == FILM_SHARE_FACTOR_PHONE_LAST4) {
        if (o->phone_last4[0]) {
            fr.factor = FILM_SHARE_FACTOR_PHONE_LAST4;
            fr.factor_answer = o->phone_last4;
        } else {
            cp_log_warn("api.film_factor", "order=%" PRId64 " factor=birth_date detail=\"%s\"",
                        o->id, "phone_last4 is asked for but the order has no phone");
        }
    }
    if (fr.factor == FILM_SHARE_FACTOR_BIRTH_DATE && row.rec.patient.birth_date[0] == '\0') {
        cp_log_warn("api.film_release", "order=%" PRId64 " detail=\"%s\"", o->id,
                    "the patient's birth date is not in the index");
        return false;
    }
    fr.peer = http_request_peer(req);
    if (film_share_create(a->cfg.film, &fr, NULL, token, &err) != CP_OK)
        goto done;
    if (!share_url(a, req, token, url, sizeof(url))) {
        cp_error_set(&err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "the share URL does not fit");
        goto done;
    }

    fill_pdf(a, o, v, &row, &names, &r);
    if (fr.factor == FILM_SHARE_FACTOR_PHONE_LAST4)
        r.qr_note = "验证: 手机号码后四位 / Verify with: last 4 digits of phone";
    r.share_url = url;
    key_images_fill(a, o->study_uid, &keys, &r);
    if (pdf_render(&r, &pdf, &err) != CP_OK)
        goto done;
    pdf_path(a, o->id, path, sizeof(path));
    if (!write_file(path, pdf.data, pdf.len)) {
        cp_error_set(&err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "the report PDF could not be written");
        goto done;
    }
    if (a->cfg.arc && pdf_store(a->cfg.arc, a->cfg.idx, o->study_uid, fr.institution_id,
                                NULL, pdf.data, pdf.len, sop, &err) != CP_OK)
        goto done;
    cp_log_info("api.film_ready", "order=%" PRId64 " bytes=%zu", o->id, pdf.len);
    made = true;

done:
    if (!made)
        cp_log_warn("api.film_release", "order=%" PRId64 " detail=\"%s\"", o->id,
                    err.detail);
    explicit_bzero(token, sizeof(token));
    explicit_bzero(url, sizeof(url));
    key_images_free(&keys);
    cp_buf_free(&pdf);
    return made;
}

void api_film_on_release(api_service *a, http_request *req, const order *o,
                         const report_version *v)
{
    film_make(a, req, o, v, FILM_SHARE_SCOPE_STUDY);
    api_film_sheet_on_release(a, o);
}

/* --- files ---------------------------------------------------------------------------- */

static cp_status respond_pdf(http_request *req, const char *path)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0)
            close(fd);
        return api_respond_error(req, 404, "not_found", "there is no report PDF");
    }
    http_response_header(req, "Cache-Control", "no-store");
    http_response_header(req, "Content-Disposition", "inline; filename=\"report.pdf\"");
    return http_respond_fd(req, 200, "application/pdf", fd, 0, (uint64_t)sb.st_size);
}

/* GET /api/orders/{id}/film: the clinic's copy to print. */
static cp_status handle_order_film(http_request *req, void *ctx)
{
    api_service *a = ctx;
    char path[FILM_PATH_MAX];
    order o;

    if (!api_order_load(a, req, &o))
        return CP_OK;
    if (o.state != ORDER_RELEASED || !a->cfg.film_dir)
        return api_respond_error(req, 404, "not_found", "the report is not released yet");
    pdf_path(a, o.id, path, sizeof(path));
    api_order_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_READ, "film_read", &o);
    return respond_pdf(req, path);
}

typedef struct link_ids {
    int64_t ids[API_FILM_CHILDREN_MAX];
    size_t count;
} link_ids;

/* Links made by staff (children go with their parent). */
static cp_status staff_link_one(void *ctx, const film_share_link *l)
{
    link_ids *c = ctx;

    if (l->parent_id != 0)
        return CP_OK;
    if (c->count == API_FILM_CHILDREN_MAX)
        return CP_ERR_STOPPED;
    c->ids[c->count++] = l->id;
    return CP_OK;
}

/* Revokes the study's valid links made by staff; *count gets how many. */
static cp_status revoke_study(api_service *a, http_request *req, const order *o, size_t *count,
                              cp_error *err)
{
    const principal *p = api_principal(req);
    film_share_filter f;
    link_ids ids;
    cp_status st;

    memset(&f, 0, sizeof(f));
    f.study_uid = o->study_uid;
    f.valid_only = true;
    ids.count = 0;
    *count = 0;
    st = film_share_list(a->cfg.film, &f, staff_link_one, &ids, err);
    for (size_t i = 0; st == CP_OK && i < ids.count; i++) {
        st = film_share_revoke(a->cfg.film, ids.ids[i],
                               p && p->kind == PRINCIPAL_USER ? p->id : 0,
                               http_request_peer(req), err);
        if (st == CP_OK)
            (*count)++;
    }
    return st;
}

/*
 * The clinic that asked for the order (or the service) manages its film:
 * false after a 403 or 404.
 */
static bool film_manager(api_service *a, http_request *req, order *o)
{
    const principal *p;

    if (!api_order_load(a, req, o))
        return false;
    p = api_principal(req);
    if (!a->cfg.film) {
        api_respond_error(req, 503, "unavailable", "cloud film is not offered here");
        return false;
    }
    if (o->state != ORDER_RELEASED) {
        api_respond_error(req, 404, "not_found", "the report is not released yet");
        return false;
    }
    if (p->kind != PRINCIPAL_SERVICE && !api_own_institution(p, o->requesting_id)) {
        api_respond_forbidden(req);
        return false;
    }
    return true;
}

/* POST /api/orders/{id}/film/revoke: the study's links stop working at once. */
static cp_status handle_order_revoke(http_request *req, void *ctx)
{
    api_service *a = ctx;
    size_t count = 0;
    order o;
    cp_error err;
    cp_status st;

    if (!film_manager(a, req, &o))
        return CP_OK;
    cp_error_clear(&err);
    st = revoke_study(a, req, &o, &count, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    return api_respond_json(req, 200, json_pack("{s:I}", "revoked", (json_int_t)count));
}

/*
 * POST /api/orders/{id}/film: a new link and PDF (a lost paper); the old
 * links are revoked. The body may ask for {"scope": "patient"} or
 * "patient_with_prior": a link that shows the patient's other studies at
 * the institution too.
 */
static cp_status reissue_body(api_service *a, http_request *req, json_t *body)
{
    report_version v = { 0 };
    film_share_scope scope = FILM_SHARE_SCOPE_STUDY;
    const char *name = NULL;
    size_t count = 0;
    bool made;
    order o;
    cp_error err;
    cp_status st;

    if (body && (!json_is_object(body) ||
                 !api_json_string(body, "scope", 32, false, &name) ||
                 (name && (scope = film_share_scope_parse(name)) == 0)))
        return api_respond_error(req, 400, "invalid",
                                 "scope is study, patient_with_prior or patient");
    if (!film_manager(a, req, &o))
        return CP_OK;
    cp_error_clear(&err);
    st = revoke_study(a, req, &o, &count, &err);
    if (st == CP_OK)
        st = report_get(a->cfg.reports, o.id, -1, &v, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    made = film_make(a, req, &o, &v, scope);
    report_version_clear(&v);
    if (!made)
        return api_respond_error(req, 500, "internal", "the report PDF could not be made");
    api_order_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_UPDATE, "film_reissued", &o);
    return api_respond_json(req, 201, json_pack("{s:I, s:s}", "revoked", (json_int_t)count,
                                                "scope", film_share_scope_name(scope)));
}

static cp_status handle_order_reissue(http_request *req, void *ctx)
{
    /* The body is optional (the clinic's button sends none). */
    if (http_request_content_length(req) <= 0)
        return reissue_body(ctx, req, NULL);
    return api_read_json(ctx, req, reissue_body);
}

/* --- the patient's session -------------------------------------------------------------- */

/* The value of the film cookie, copied; false when there is none. */
static bool film_cookie(const http_request *req, char *out, size_t cap)
{
    const char *h = http_request_header(req, "Cookie");
    size_t nlen = strlen(FILM_COOKIE);

    while (h && *h) {
        size_t len;

        h += strspn(h, " ;");
        len = strcspn(h, ";");
        if (len > nlen && strncmp(h, FILM_COOKIE, nlen) == 0 && h[nlen] == '=') {
            len -= nlen + 1;
            if (len >= cap)
                return false;
            memcpy(out, h + nlen + 1, len);
            out[len] = '\0';
            return true;
        }
        h += len;
    }
    return false;
}

/* The first FILM_BIND_HEX hex digits of the token's hash. */
static void token_bind(const char *token, char out[FILM_BIND_HEX + 1])
{
    char hash[65];

    credential_token_hash(token, hash);
    memcpy(out, hash, FILM_BIND_HEX);
    out[FILM_BIND_HEX] = '\0';
}

static bool film_ready(api_service *a, http_request *req)
{
    if (a->cfg.film)
        return true;
    api_respond_error(req, 503, "unavailable", "cloud film is not offered here");
    return false;
}

/*
 * The link of the request's share session, when the session belongs to
 * the token of the path; false after answering (404 alike for every
 * reason, 503 when Redis is away). session (may be NULL) gets the session.
 */
static bool film_gate(api_service *a, http_request *req, film_share_link *link,
                      char *session, size_t cap)
{
    const char *token = http_request_param(req, "token");
    char value[FILM_SHARE_TOKEN_SIZE + FILM_BIND_HEX + 2], bind[FILM_BIND_HEX + 1];
    char *dot;
    cp_error err;
    cp_status st;

    if (!film_ready(a, req))
        return false;
    if (!token || !film_cookie(req, value, sizeof(value)) || !(dot = strchr(value, '.'))) {
        respond_gone(req);
        return false;
    }
    *dot = '\0';
    token_bind(token, bind);
    if (strcmp(dot + 1, bind) != 0) {
        respond_gone(req);
        return false;
    }
    cp_error_clear(&err);
    st = film_share_session_check(a->cfg.film, value, link, &err);
    if (st == CP_ERR_UNAVAILABLE) {
        api_respond_error(req, 503, "unavailable", "try again later");
        return false;
    }
    if (st != CP_OK) {
        respond_gone(req);
        return false;
    }
    if (session) {
        size_t n = strlen(value);

        if (n >= cap) {
            respond_gone(req);
            return false;
        }
        memcpy(session, value, n + 1);
    }
    explicit_bzero(value, sizeof(value));
    return true;
}

/* An audit record of what a share session did (detail: a JSON object or NULL). */
static void film_audit_detail(api_service *a, http_request *req, const film_share_link *link,
                              audit_event event, audit_action action, const char *type,
                              const char *detail)
{
    audit_record r;

    memset(&r, 0, sizeof(r));
    r.event = event;
    r.action = action;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof(r.type), "%s", type);
    snprintf(r.actor, sizeof(r.actor), "share:%" PRId64, link->id);
    snprintf(r.peer, sizeof(r.peer), "%.63s", http_request_peer(req));
    snprintf(r.object_kind, sizeof(r.object_kind), "study");
    snprintf(r.object_id, sizeof(r.object_id), "%.64s", link->study_uid);
    snprintf(r.patient_id, sizeof(r.patient_id), "%.64s", link->patient_id);
    r.institution_id = link->institution_id;
    snprintf(r.detail, sizeof(r.detail), "%s", detail ? detail : "");
    if (audit_write(a->cfg.audit, &r) != CP_OK)
        cp_log_warn("api.film_audit", "type=%s", type);
}

/* An audit record of what a share session looked at. */
static void film_audit(api_service *a, http_request *req, const film_share_link *link,
                       audit_event event, const char *type)
{
    film_audit_detail(a, req, link, event, AUDIT_READ, type, NULL);
}

/* Added for electronic film (api_film_sheet.c): the public routes' gate and audit. */
bool api_film_gate(api_service *a, http_request *req, film_share_link *link)
{
    return film_gate(a, req, link, NULL, 0);
}

void api_film_audit(api_service *a, http_request *req, const film_share_link *link,
                    audit_event event, const char *type)
{
    film_audit(a, req, link, event, type);
}

/* --- de-identified links ------------------------------------------------------------ */

/*
 * A link that asks for de-identification shows no UID of the archive:
 * every study, series and instance UID it gives out is the replacement
 * film_deident_uid makes under the link's key (the UIDs its instance files
 * carry), and a UID it is asked for is found among the study's own by that
 * replacement. Nor does it show what the profile takes out of the files:
 * the patient's name, ID, sex and birth date, the accession number, the
 * institution, the study's and series' descriptions, dates, and the names
 * of the doctors.
 */

/*
 * The de-identifier of a link that asks for one into *d (NULL for a link
 * that shows identities); false after a 503 when it cannot be made, so
 * that nothing is shown as it is by mistake.
 */
static bool link_view(api_service *a, http_request *req, const film_share_link *link,
                      film_deident **d)
{
    uint8_t key[FILM_SHARE_LINK_KEY_BYTES];
    char pseudonym[FILM_SHARE_PSEUDONYM_SIZE];
    cp_error err;
    cp_status st;

    *d = NULL;
    if (!link->deidentify)
        return true;
    film_share_link_key(a->cfg.film, link, key);
    film_share_link_pseudonym(a->cfg.film, link, pseudonym);
    cp_error_clear(&err);
    st = film_deident_open(key, pseudonym, d, &err);
    explicit_bzero(key, sizeof(key));
    if (st != CP_OK) {
        api_respond_error(req, 503, "unavailable", "try again later");
        return false;
    }
    return true;
}

/* uid as the link shows it ("" when it has no replacement). */
static void shown_uid(const film_deident *d, const char *uid, char out[INDEX_UID_MAX + 1])
{
    char mapped[FILM_DEIDENT_UID_MAX + 1];
    cp_error err;

    cp_error_clear(&err);
    if (!d)
        snprintf(out, INDEX_UID_MAX + 1, "%s", uid);
    else if (film_deident_uid(d, uid, mapped, &err) == CP_OK)
        snprintf(out, INDEX_UID_MAX + 1, "%s", mapped);
    else
        out[0] = '\0';
}

/* What a link shows before anything else: the exam, the patient unless de-identified. */
static json_t *link_json(api_service *a, const film_share_link *link)
{
    char expires[32], name[INDEX_PN_GROUP_MAX + 1] = "", uid[INDEX_UID_MAX + 1];
    index_row row;
    bool found = link->study_uid[0] && study_row(a, link->study_uid, &row);
    bool deid = link->deidentify;
    film_deident *d = NULL;
    json_t *study = json_null();
    uint8_t key[FILM_SHARE_LINK_KEY_BYTES];
    cp_error err;

    api_format_time(link->expires_us, expires);
    if (found && deid) {
        /* Only the study's UID is shown, replaced: the pseudonym is the files' alone. */
        film_share_link_key(a->cfg.film, link, key);
        cp_error_clear(&err);
        if (film_deident_open(key, "ANON", &d, &err) != CP_OK)
            found = false;
        explicit_bzero(key, sizeof(key));
    }
    if (found) {
        if (!deid)
            patient_name(&row.rec.patient.name, name, sizeof(name));
        shown_uid(d, link->study_uid, uid);
        study = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "study_uid", uid,
                          "date", deid ? "" : row.rec.study.date,
                          "description", deid ? "" : row.rec.study.description,
                          "modalities", row.modalities_in_study, "patient_name", name,
                          "sex", deid ? "" : row.rec.patient.sex);
    }
    film_deident_close(d);
    /* shared: a link the patient made for a doctor (the viewer's watermark names it). */
    return json_pack("{s:I, s:s, s:s, s:b, s:s, s:b, s:b, s:o}", "id", (json_int_t)link->id,
                     "scope", film_share_scope_name(link->scope), "expires", expires,
                     "deidentify", link->deidentify,
                     "factor", film_share_factor_name(link->factor),
                     "can_share", link->parent_id == 0 && link->created_by != 0,
                     "shared", link->parent_id != 0,
                     "study", study ? study : json_null());
}

/* --- the link's studies ------------------------------------------------------------------ */

/*
 * Which studies a link shows (share.h, "Scopes"): study, its own;
 * patient, every study of the patient (issuer, patient id) at the link's
 * institution; patient_with_prior, the link's study and the patient's
 * studies there dated on or before it (the priors a reader compares with;
 * a later study is not shown, nor one without a date).
 */
typedef struct scope_study {
    char uid[INDEX_UID_MAX + 1];
    char date[INDEX_DA_MAX + 1];
    char description[INDEX_LO_MAX + 1];
    char modalities[INDEX_MODALITIES_MAX + 1];
} scope_study;

typedef struct scope_walk {
    const film_share_link *link;
    char upto[INDEX_DA_MAX + 1];        /* patient_with_prior: the link's study's date */
    scope_study *studies;
    size_t count, cap;
} scope_walk;

static bool uid_ok(const char *s);

static bool in_scope(const scope_walk *w, const index_row *row)
{
    const index_instance_record *rec = &row->rec;

    if (row->institution_id != w->link->institution_id ||
        strcmp(rec->patient.id, w->link->patient_id) != 0 ||
        strcmp(rec->patient.issuer, w->link->issuer) != 0)
        return false;
    if (strcmp(rec->study.uid, w->link->study_uid) == 0 ||
        w->link->scope == FILM_SHARE_SCOPE_PATIENT)
        return true;
    return w->link->scope == FILM_SHARE_SCOPE_PATIENT_WITH_PRIOR && rec->study.date[0] &&
           w->upto[0] && strcmp(rec->study.date, w->upto) <= 0;
}

static cp_status scope_one(void *ctx, const index_row *row)
{
    scope_walk *w = ctx;
    scope_study *s;
    cp_status st;

    if (!in_scope(w, row))
        return CP_OK;
    st = cp_array_grow(&w->studies, &w->cap, w->count, sizeof(*w->studies), 16,
                       FILM_STUDIES_MAX);
    if (st != CP_OK)
        return st == CP_ERR_LIMIT ? CP_ERR_STOPPED : st;
    s = &w->studies[w->count++];
    snprintf(s->uid, sizeof(s->uid), "%s", row->rec.study.uid);
    snprintf(s->date, sizeof(s->date), "%s", row->rec.study.date);
    snprintf(s->description, sizeof(s->description), "%s", row->rec.study.description);
    snprintf(s->modalities, sizeof(s->modalities), "%s", row->modalities_in_study);
    return CP_OK;
}

static int study_newest_first(const void *pa, const void *pb)
{
    const scope_study *x = pa, *y = pb;
    int c = strcmp(y->date, x->date);

    return c ? c : strcmp(x->uid, y->uid);
}

/* The studies of the link's scope into w (free w->studies with cp_free), newest first. */
static cp_status scope_studies(api_service *a, const film_share_link *link, scope_walk *w)
{
    index_term term = { "PatientID", link->patient_id };
    index_query_spec spec;
    index_row row;
    cp_status st;

    memset(w, 0, sizeof(*w));
    w->link = link;
    if (link->study_uid[0] && study_row(a, link->study_uid, &row))
        snprintf(w->upto, sizeof(w->upto), "%s", row.rec.study.date);
    if (!a->cfg.idx)
        return CP_ERR_UNAVAILABLE;
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_STUDY;
    if (link->scope == FILM_SHARE_SCOPE_STUDY) {
        term.attribute = "StudyInstanceUID";
        term.value = link->study_uid;
    }
    spec.terms = &term;
    spec.term_count = 1;
    spec.institutions = &link->institution_id;
    spec.institution_count = 1;
    st = index_query(a->cfg.idx, &spec, scope_one, w, NULL);
    if (st == CP_ERR_STOPPED)
        st = CP_OK;
    if (st == CP_OK && w->count > 1)
        qsort(w->studies, w->count, sizeof(*w->studies), study_newest_first);
    return st;
}

/*
 * The study a request is about: ?study=<uid> when the link's scope holds
 * it, else the link's own. It replaces link->study_uid, so that what
 * follows (and its audit record) is about that study. false after a 404.
 */
static bool film_study(api_service *a, http_request *req, film_share_link *link)
{
    const char *want = http_request_query(req, "study");
    char shown[INDEX_UID_MAX + 1], real[INDEX_UID_MAX + 1] = "";
    film_deident *d = NULL;
    scope_walk w;
    bool found = false;

    /* A de-identified link is asked for studies by their replaced UIDs. */
    if (!link_view(a, req, link, &d))
        return false;
    shown_uid(d, link->study_uid, shown);
    if (!want || !want[0] || strcmp(want, shown) == 0) {
        film_deident_close(d);
        if (link->study_uid[0])
            return true;
        respond_gone(req);
        return false;
    }
    if (link->scope != FILM_SHARE_SCOPE_STUDY && uid_ok(want) &&
        scope_studies(a, link, &w) == CP_OK) {
        for (size_t i = 0; i < w.count && !found; i++) {
            shown_uid(d, w.studies[i].uid, shown);
            found = strcmp(shown, want) == 0;
            if (found)
                snprintf(real, sizeof(real), "%s", w.studies[i].uid);
        }
        cp_free(w.studies);
    }
    film_deident_close(d);
    if (!found) {
        api_respond_error(req, 404, "not_found", "no such study");
        return false;
    }
    snprintf(link->study_uid, sizeof(link->study_uid), "%s", real);
    return true;
}

static bool released_order(api_service *a, const char *study_uid, order *o);

/* GET /film/api/{token}/studies: what the link shows, newest first. */
static cp_status handle_studies(http_request *req, void *ctx)
{
    api_service *a = ctx;
    char uid[INDEX_UID_MAX + 1];
    film_share_link link;
    film_deident *d = NULL;
    scope_walk w;
    json_t *arr;
    order o;
    cp_status st;

    if (!film_gate(a, req, &link, NULL, 0) || !link_view(a, req, &link, &d))
        return CP_OK;
    st = scope_studies(a, &link, &w);
    arr = json_array();
    for (size_t i = 0; st == CP_OK && i < w.count; i++) {
        const scope_study *s = &w.studies[i];
        json_t *j;

        shown_uid(d, s->uid, uid);
        j = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "study_uid", uid,
                      "date", d ? "" : s->date, "description", d ? "" : s->description,
                      "modalities", s->modalities,
                      "report", released_order(a, s->uid, &o),
                      "own", strcmp(s->uid, link.study_uid) == 0);

        if (!arr || !j || json_array_append_new(arr, j) != 0)
            st = CP_ERR_NOMEM;
    }
    cp_free(w.studies);
    film_deident_close(d);
    if (st != CP_OK) {
        json_decref(arr);
        return api_respond_status(req, st, NULL);
    }
    film_audit(a, req, &link, AUDIT_QUERY, "share_studies_read");
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, json_pack("{s:s, s:o}", "scope",
                                                film_share_scope_name(link.scope),
                                                "studies", arr));
}

/* GET /film/api/{token}: the link was opened; says which factor to ask for. */
static cp_status handle_open(http_request *req, void *ctx)
{
    api_service *a = ctx;
    film_share_link link;
    cp_error err;
    cp_status st;

    if (!film_ready(a, req))
        return CP_OK;
    cp_error_clear(&err);
    st = film_share_open(a->cfg.film, http_request_param(req, "token"),
                         http_request_peer(req), &link, &err);
    if (st == CP_ERR_UNAVAILABLE)
        return api_respond_error(req, 503, "unavailable", "try again later");
    if (st != CP_OK)
        return respond_gone(req);
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, json_pack("{s:s}", "factor",
                                                film_share_factor_name(link.factor)));
}

static cp_status verify_body(api_service *a, http_request *req, json_t *body)
{
    const char *token = http_request_param(req, "token");
    const char *answer;
    char cookie[FILM_SHARE_TOKEN_SIZE + FILM_BIND_HEX + 96], bind[FILM_BIND_HEX + 1];
    char retry[16];
    film_share_result res;
    cp_error err;
    cp_status st;

    if (!json_is_object(body) || !api_json_string(body, "answer", SHARE_ANSWER_MAX, true,
                                                  &answer))
        return api_respond_error(req, 400, "invalid", "answer is required");
    cp_error_clear(&err);
    memset(&res, 0, sizeof(res));
    st = film_share_verify(a->cfg.film, token, answer, http_request_peer(req), &res, &err);
    if (st == CP_ERR_UNAVAILABLE)
        return api_respond_error(req, 503, "unavailable", "try again later");
    if (st != CP_OK)
        return respond_gone(req);
    if (res.verdict == FILM_SHARE_WAIT || res.verdict == FILM_SHARE_BLOCKED) {
        snprintf(retry, sizeof(retry), "%u", res.retry_after_s ? res.retry_after_s : 1);
        http_response_header(req, "Retry-After", retry);
        return api_respond_json(req, 429, json_pack("{s:s, s:i, s:s, s:i}", "error",
                                                    "too many wrong answers", "status", 429,
                                                    "reason", "throttled", "retry_after",
                                                    (int)res.retry_after_s));
    }
    if (res.verdict != FILM_SHARE_VERIFIED)
        return api_respond_json(req, 403, json_pack("{s:s, s:i, s:s, s:i}", "error",
                                                    "the answer is not right", "status", 403,
                                                    "reason", "wrong_answer", "failures",
                                                    (int)res.failures));

    token_bind(token, bind);
    snprintf(cookie, sizeof(cookie), "%s=%s.%s; Path=/film/; HttpOnly; SameSite=Strict%s",
             FILM_COOKIE, res.session, bind, a->cfg.secure_cookies ? "; Secure" : "");
    st = http_response_header(req, "Set-Cookie", cookie);
    explicit_bzero(cookie, sizeof(cookie));
    explicit_bzero(res.session, sizeof(res.session));
    if (st == CP_OK)
        st = http_response_header(req, "Cache-Control", "no-store");
    if (st != CP_OK)
        return api_respond_status(req, st, NULL);
    return api_respond_json(req, 200, link_json(a, &res.link));
}

static cp_status handle_verify(http_request *req, void *ctx)
{
    if (!film_ready(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, verify_body);
}

/* GET /film/api/{token}/link: what the link shows, again (a reload of the page). */
static cp_status handle_link(http_request *req, void *ctx)
{
    api_service *a = ctx;
    film_share_link link;

    if (!film_gate(a, req, &link, NULL, 0))
        return CP_OK;
    return api_respond_json(req, 200, link_json(a, &link));
}

/* --- the report ------------------------------------------------------------------------ */

static cp_status released_one(void *ctx, const order *o)
{
    *(order *)ctx = *o;
    return CP_OK;
}

/* The study's latest released order; false when there is none. */
static bool released_order(api_service *a, const char *study_uid, order *o)
{
    static const order_state released[] = { ORDER_RELEASED };
    order_filter f;
    cp_error err;

    memset(o, 0, sizeof(*o));
    memset(&f, 0, sizeof(f));
    f.states = released;
    f.state_count = 1;
    f.study_uid = study_uid;
    cp_error_clear(&err);
    if (!a->cfg.orders || !study_uid[0] ||
        order_list(a->cfg.orders, &f, released_one, o, &err) != CP_OK)
        return false;
    return o->id != 0;
}

static cp_status handle_report(http_request *req, void *ctx)
{
    api_service *a = ctx;
    char written[32], reviewed[32], released[32];
    char author[DIRECTORY_NAME_MAX + 1], reviewer[DIRECTORY_NAME_MAX + 1];
    film_share_link link;
    report_version v = { 0 };
    json_t *j;
    order o;
    cp_error err;

    if (!film_gate(a, req, &link, NULL, 0) || !film_study(a, req, &link))
        return CP_OK;
    cp_error_clear(&err);
    if (!a->cfg.reports || !released_order(a, link.study_uid, &o) ||
        report_get(a->cfg.reports, o.id, -1, &v, &err) != CP_OK)
        return api_respond_error(req, 404, "not_found", "there is no released report");
    api_format_time(v.written_us, written);
    api_format_time(v.reviewed_us, reviewed);
    api_format_time(v.released_us, released);
    user_name(a, v.author_id, author, sizeof(author));
    user_name(a, v.reviewer_id, reviewer, sizeof(reviewer));
    if (link.deidentify) {
        /* The texts are clinical; who wrote them and when is not (PS3.15 E.1). */
        author[0] = reviewer[0] = '\0';
        written[0] = reviewed[0] = released[0] = '\0';
    }
    j = json_pack("{s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s}",
                  "findings", v.findings ? v.findings : "",
                  "impression", v.impression ? v.impression : "", "critical", v.critical,
                  "doctor", author, "reviewer", reviewer, "written", written,
                  "reviewed", reviewed, "released", released,
                  "signature_valid", report_verify(a->cfg.reports, &v, &o),
                  "modality", o.modality, "body_part", o.body_part);
    report_version_clear(&v);
    film_audit(a, req, &link, AUDIT_PATIENT_RECORD, "share_report_read");
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, j);
}

/*
 * The report PDF of a de-identified link, made afresh: the findings and
 * impression with the modality and body part, the pseudonym for the
 * patient, and none of the name, ID, sex, birth date, accession number,
 * institutions, doctors, dates or QR code the printed one carries.
 */
static cp_status respond_deidentified_pdf(api_service *a, http_request *req,
                                          const film_share_link *link, const order *o)
{
    char pseudonym[FILM_SHARE_PSEUDONYM_SIZE];
    report_version v = { 0 };
    release_names names;
    pdf_report r;
    index_row row;
    cp_buf pdf = CP_BUF_INIT;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    if (!a->cfg.reports || !study_row(a, link->study_uid, &row) ||
        report_get(a->cfg.reports, o->id, -1, &v, &err) != CP_OK)
        return api_respond_error(req, 404, "not_found", "there is no report PDF");
    film_share_link_pseudonym(a->cfg.film, link, pseudonym);
    fill_pdf(a, o, &v, &row, &names, &r);
    r.institution = NULL;
    r.patient_name = pseudonym;
    r.patient_id = pseudonym;
    r.sex = NULL;
    r.birth_date = NULL;
    r.accession = NULL;
    r.study_date = NULL;
    r.study_description = NULL;
    r.reading_institution = NULL;
    r.author = NULL;
    r.reviewer = NULL;
    r.written_us = r.reviewed_us = r.released_us = 0;
    r.share_url = NULL;
    r.qr_note = NULL;
    st = pdf_render(&r, &pdf, &err);
    report_version_clear(&v);
    if (st != CP_OK) {
        cp_buf_free(&pdf);
        return api_respond_status(req, st, &err);
    }
    film_audit(a, req, link, AUDIT_PATIENT_RECORD, "share_report_pdf");
    http_response_header(req, "Cache-Control", "no-store");
    http_response_header(req, "Content-Disposition", "inline; filename=\"report.pdf\"");
    st = http_respond_buffer(req, 200, "application/pdf", pdf.data, pdf.len);
    cp_buf_free(&pdf);
    return st;
}

static cp_status handle_report_pdf(http_request *req, void *ctx)
{
    api_service *a = ctx;
    char path[FILM_PATH_MAX];
    film_share_link link;
    order o;

    if (!film_gate(a, req, &link, NULL, 0) || !film_study(a, req, &link))
        return CP_OK;
    if (!a->cfg.film_dir || !released_order(a, link.study_uid, &o))
        return api_respond_error(req, 404, "not_found", "there is no report PDF");
    if (link.deidentify)
        return respond_deidentified_pdf(a, req, &link, &o);
    pdf_path(a, o.id, path, sizeof(path));
    film_audit(a, req, &link, AUDIT_PATIENT_RECORD, "share_report_pdf");
    return respond_pdf(req, path);
}

/* --- series and pictures ------------------------------------------------------------------ */

typedef struct film_image {
    size_t series;                      /* index into the series array */
    int64_t number;
    size_t seq;                         /* arrival order, for equal numbers */
    char sop_uid[INDEX_UID_MAX + 1];
} film_image;

typedef struct film_walk {
    json_t *series;                     /* objects in first-seen order */
    film_image *images;
    size_t count, cap;
    const film_deident *deid;           /* a de-identified link's: UIDs replaced */
} film_walk;

static cp_status image_one(void *ctx, const index_row *row)
{
    film_walk *w = ctx;
    const index_instance_record *rec = &row->rec;
    size_t idx, n = json_array_size(w->series);
    char series_uid[INDEX_UID_MAX + 1];
    film_image *im;
    cp_status st;

    /* Only pictures: the report's own SR and PDF have nothing to render. */
    if (rec->instance.rows == 0 || rec->instance.columns == 0)
        return CP_OK;
    shown_uid(w->deid, rec->series.uid, series_uid);
    for (idx = 0; idx < n; idx++) {
        json_t *s = json_array_get(w->series, idx);

        if (strcmp(json_string_value(json_object_get(s, "series_uid")), series_uid) == 0)
            break;
    }
    if (idx == n) {
        /* A de-identified link's series are told apart by modality and number. */
        json_t *s = json_pack("{s:s, s:s, s:s, s:s, s:I}", "series_uid", series_uid,
                              "modality", rec->series.modality,
                              "description", w->deid ? "" : rec->series.description,
                              "body_part", rec->series.body_part,
                              "number", (json_int_t)rec->series.number);

        if (!s || json_array_append_new(w->series, s) != 0)
            return CP_ERR_NOMEM;
    }
    st = cp_array_grow(&w->images, &w->cap, w->count, sizeof(*w->images), 64,
                       API_FILM_INSTANCES_MAX);
    if (st != CP_OK)
        return st;
    im = &w->images[w->count];
    im->series = idx;
    im->number = rec->instance.number;
    im->seq = w->count;
    shown_uid(w->deid, rec->instance.sop_uid, im->sop_uid);
    w->count++;
    return CP_OK;
}

static int image_cmp(const void *pa, const void *pb)
{
    const film_image *x = pa, *y = pb;

    if (x->series != y->series)
        return x->series < y->series ? -1 : 1;
    if (x->number != y->number)
        return x->number < y->number ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Each series gets its instances in order, a count and its first picture's
 * thumbnail (query: "" or "?study=<uid>" for a study not the link's own).
 */
static cp_status series_finish(film_walk *w, const char *token, const char *query)
{
    char url[SHARE_URL_MAX + 2 * INDEX_UID_MAX + 64];

    qsort(w->images, w->count, sizeof(*w->images), image_cmp);
    for (size_t i = 0; i < w->count; i++) {
        json_t *s = json_array_get(w->series, w->images[i].series);
        json_t *list = json_object_get(s, "instances");

        if (!list) {
            snprintf(url, sizeof(url), "/film/api/%s/instances/%s/thumbnail%s", token,
                     w->images[i].sop_uid, query);
            list = json_array();
            if (!list || json_object_set_new(s, "instances", list) != 0 ||
                json_object_set_new(s, "thumbnail", json_string(url)) != 0)
                return CP_ERR_NOMEM;
        }
        if (json_array_append_new(list, json_string(w->images[i].sop_uid)) != 0)
            return CP_ERR_NOMEM;
    }
    for (size_t i = 0; i < json_array_size(w->series); i++) {
        json_t *s = json_array_get(w->series, i);

        json_object_set_new(s, "instance_count",
                            json_integer((json_int_t)json_array_size(
                                json_object_get(s, "instances"))));
    }
    return CP_OK;
}

static cp_status handle_series(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const char *token = http_request_param(req, "token");
    char own[INDEX_UID_MAX + 1], query[INDEX_UID_MAX + 8] = "", shown[INDEX_UID_MAX + 1];
    film_share_link link;
    film_deident *deid = NULL;
    film_walk w = { 0 };
    index_term term;
    index_query_spec spec;
    cp_status st;

    if (!film_gate(a, req, &link, NULL, 0))
        return CP_OK;
    /* The link's own study, before film_study may put another in its place. */
    snprintf(own, sizeof(own), "%s", link.study_uid);
    if (!film_study(a, req, &link) || !link_view(a, req, &link, &deid))
        return CP_OK;
    w.deid = deid;
    if (strcmp(own, link.study_uid) != 0) {
        shown_uid(deid, link.study_uid, shown);
        snprintf(query, sizeof(query), "?study=%s", shown);
    }
    w.series = json_array();
    if (!w.series) {
        film_deident_close(deid);
        return api_respond_json(req, 503, NULL);
    }
    term.attribute = "StudyInstanceUID";
    term.value = link.study_uid;
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = API_FILM_INSTANCES_MAX;
    st = a->cfg.idx ? index_query(a->cfg.idx, &spec, image_one, &w, NULL) : CP_ERR_UNAVAILABLE;
    if (st == CP_OK)
        st = series_finish(&w, token, query);
    cp_free(w.images);
    film_deident_close(deid);
    if (st != CP_OK) {
        json_decref(w.series);
        return api_respond_status(req, st, NULL);
    }
    film_audit(a, req, &link, AUDIT_INSTANCES_ACCESSED, "share_series_read");
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, json_pack("{s:o}", "series", w.series));
}

static bool uid_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n > 0 && n <= INDEX_UID_MAX && strspn(s, "0123456789.") == n;
}

typedef struct instance_find {
    const film_deident *deid;
    const char *want;                   /* the SOP Instance UID as the link shows it */
    index_instance inst;
    char series_uid[INDEX_UID_MAX + 1];     /* the archive's, for the audit */
    bool found;
} instance_find;

static cp_status instance_match(void *ctx, const index_row *row)
{
    instance_find *f = ctx;
    char shown[INDEX_UID_MAX + 1];

    shown_uid(f->deid, row->rec.instance.sop_uid, shown);
    if (strcmp(shown, f->want) != 0)
        return CP_OK;
    f->inst = row->rec.instance;
    snprintf(f->series_uid, sizeof(f->series_uid), "%s", row->rec.series.uid);
    f->found = true;
    return CP_ERR_STOPPED;
}

/*
 * The instance of the link's study that the link calls sop into *inst:
 * looked up directly, or for a de-identified link by the replacement of
 * each instance of the study. false when there is none. series_uid (may be
 * NULL; INDEX_UID_MAX + 1 bytes) gets the archive's UID of its series.
 */
static bool find_instance(api_service *a, const film_share_link *link, const film_deident *deid,
                          const char *sop, index_instance *inst, char *series_uid)
{
    instance_find f;
    index_term terms[2];
    index_query_spec spec;

    if (!uid_ok(sop) || !a->cfg.idx)
        return false;
    memset(&f, 0, sizeof(f));
    f.deid = deid;
    f.want = sop;
    terms[0].attribute = "StudyInstanceUID";
    terms[0].value = link->study_uid;
    terms[1].attribute = "SOPInstanceUID";
    terms[1].value = sop;
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = terms;
    spec.term_count = deid ? 1 : 2;
    spec.limit = deid ? API_FILM_INSTANCES_MAX : 1;
    if (index_query(a->cfg.idx, &spec, instance_match, &f, NULL) != CP_OK || !f.found ||
        f.inst.blob_key[0] == '\0')
        return false;
    *inst = f.inst;
    if (series_uid)
        memcpy(series_uid, f.series_uid, sizeof(f.series_uid));
    return true;
}

/*
 * Whether this share session looks at this series for the first time in
 * FILM_SEEN_S: a key of the session's hash and the series, set with NX and
 * a TTL in Redis, so that paging through a stack of 500 slices makes one
 * audit record, not 500. Without Redis every picture counts as a first
 * look: audited too often rather than not at all.
 */
static bool first_look(api_service *a, const char *session, const char *series_uid)
{
    char hash[65], rest[32 + 1 + INDEX_UID_MAX + 1], key[256];
    kv_reply *reply = NULL;
    bool first = true;
    cp_error err;

    if (!a->cfg.kv)
        return true;
    credential_token_hash(session, hash);
    snprintf(rest, sizeof(rest), "%.32s:%s", hash, series_uid);
    cp_error_clear(&err);
    if (kv_key(a->cfg.kv, key, sizeof(key), "film:seen", rest) != CP_OK ||
        kv_commandv(a->cfg.kv, &reply, &err, "SET", key, "1", "NX", "EX", FILM_SEEN_TTL,
                    (char *)NULL) != CP_OK)
        return true;
    first = reply->type != KV_REPLY_NIL;
    kv_reply_free(reply);
    return first;
}

/*
 * A rendered picture or a thumbnail. The first look of a share session at
 * each series is audited as share_images_read (first_look throttles it).
 */
static cp_status respond_picture(http_request *req, api_service *a, bool thumbnail)
{
    const char *sop = http_request_param(req, "sop");
    char session[FILM_SHARE_TOKEN_SIZE], series_uid[INDEX_UID_MAX + 1], detail[256];
    film_share_link link;
    film_deident *deid = NULL;
    index_instance inst;
    bool found;

    if (!film_gate(a, req, &link, session, sizeof(session)) || !film_study(a, req, &link)) {
        explicit_bzero(session, sizeof(session));
        return CP_OK;
    }
    if (!a->film_render) {
        explicit_bzero(session, sizeof(session));
        return api_respond_error(req, 503, "unavailable", "pictures are not rendered here");
    }
    if (!link_view(a, req, &link, &deid)) {
        explicit_bzero(session, sizeof(session));
        return CP_OK;
    }
    found = find_instance(a, &link, deid, sop, &inst, series_uid);
    film_deident_close(deid);
    if (found && first_look(a, session, series_uid)) {
        snprintf(detail, sizeof(detail), "{\"series_uid\":\"%s\",\"thumbnail\":%s}",
                 series_uid, thumbnail ? "true" : "false");
        film_audit_detail(a, req, &link, AUDIT_INSTANCES_ACCESSED, AUDIT_READ,
                          "share_images_read", detail);
    }
    explicit_bzero(session, sizeof(session));
    if (!found)
        return api_respond_error(req, 404, "not_found", "no such instance");
    return a->film_render(a->film_render_ctx, req, inst.blob_key, inst.hash, thumbnail);
}

/*
 * GET /film/api/{token}/instances/{sop}/file: the instance as
 * application/dicom; de-identified (PS3.15 E.1, film/deident.h) for a link
 * that asks for it, streamed either way.
 */
static cp_status handle_instance_file(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const char *sop = http_request_param(req, "sop");
    film_share_link link;
    film_deident *deid = NULL;
    index_instance inst;

    if (!film_gate(a, req, &link, NULL, 0) || !film_study(a, req, &link))
        return CP_OK;
    if (!a->film_store)
        return api_respond_error(req, 503, "unavailable", "instance files are not sent here");
    if (!link_view(a, req, &link, &deid))
        return CP_OK;
    if (!find_instance(a, &link, deid, sop, &inst, NULL)) {
        film_deident_close(deid);
        return api_respond_error(req, 404, "not_found", "no such instance");
    }
    film_audit(a, req, &link, AUDIT_INSTANCES_ACCESSED, "share_instance_file");
    /* The file is named by the UID the link shows, which is the one it carries. */
    return api_film_file_respond(req, a->film_store, inst.blob_key, sop, deid);
}

static cp_status handle_rendered(http_request *req, void *ctx)
{
    return respond_picture(req, ctx, false);
}

static cp_status handle_thumbnail(http_request *req, void *ctx)
{
    return respond_picture(req, ctx, true);
}

/* --- sharing on ---------------------------------------------------------------------------- */

static cp_status share_body(api_service *a, http_request *req, json_t *body)
{
    char session[FILM_SHARE_TOKEN_SIZE], token[FILM_SHARE_TOKEN_SIZE], url[SHARE_URL_MAX];
    char expires[32];
    film_share_child_request cr;
    film_share_link link, child;
    int64_t days = 0;
    bool deid = false, has_days, has;
    cp_error err;
    cp_status st;

    if (!film_gate(a, req, &link, session, sizeof(session)))
        return CP_OK;
    if (!json_is_object(body) ||
        !api_json_int(body, "days", 1, API_FILM_CHILD_DAYS_MAX, &days, &has_days) ||
        !api_json_bool(body, "deidentify", &deid, &has))
        return api_respond_error(req, 400, "invalid", "days is 1 to 365; deidentify a boolean");
    memset(&cr, 0, sizeof(cr));
    cr.scope = link.scope;
    /* Without days the store's default; either way no longer than the parent. */
    cr.expires_us = has_days ? now_us() + days * FILM_DAY_US : 0;
    cr.deidentify = deid;
    cr.peer = http_request_peer(req);
    cp_error_clear(&err);
    st = film_share_child(a->cfg.film, session, &cr, &child, token, &err);
    explicit_bzero(session, sizeof(session));
    if (st == CP_ERR_NOT_FOUND)
        return respond_gone(req);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    if (!share_url(a, req, token, url, sizeof(url))) {
        explicit_bzero(token, sizeof(token));
        return api_respond_error(req, 500, "internal", "the link's URL does not fit");
    }
    explicit_bzero(token, sizeof(token));
    api_format_time(child.expires_us, expires);
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 201, json_pack("{s:I, s:s, s:s, s:b}", "id",
                                                (json_int_t)child.id, "url", url,
                                                "expires", expires,
                                                "deidentify", child.deidentify));
}

static cp_status handle_share(http_request *req, void *ctx)
{
    if (!film_ready(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, share_body);
}

static cp_status shares_one(void *ctx, const film_share_link *l)
{
    json_t *list = ctx, *j;
    char created[32], expires[32], revoked[32];

    api_format_time(l->created_us, created);
    api_format_time(l->expires_us, expires);
    if (l->revoked_us)
        api_format_time(l->revoked_us, revoked);
    j = json_pack("{s:I, s:s, s:s, s:b, s:b, s:o, s:I}", "id", (json_int_t)l->id,
                  "created", created, "expires", expires, "deidentify", l->deidentify,
                  "revoked", l->revoked_us != 0,
                  "revoked_at", l->revoked_us ? json_string(revoked) : json_null(),
                  "views", (json_int_t)l->views);
    if (!j || json_array_append_new(list, j) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

/*
 * GET /film/api/{token}/shares: the links the patient made from this one
 * (revoked and expired too, newest first); none for a link that cannot
 * share on.
 */
static cp_status handle_shares(http_request *req, void *ctx)
{
    api_service *a = ctx;
    film_share_link link;
    film_share_filter ff;
    json_t *list;
    cp_error err;
    cp_status st = CP_OK;

    if (!film_gate(a, req, &link, NULL, 0))
        return CP_OK;
    list = json_array();
    if (!list)
        return api_respond_json(req, 503, NULL);
    memset(&ff, 0, sizeof(ff));
    ff.parent_id = link.id;
    ff.limit = API_FILM_CHILDREN_MAX;
    cp_error_clear(&err);
    if (link.parent_id == 0 && link.created_by != 0)
        st = film_share_list(a->cfg.film, &ff, shares_one, list, &err);
    if (st != CP_OK) {
        json_decref(list);
        return api_respond_status(req, st, &err);
    }
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, json_pack("{s:o}", "shares", list));
}

/*
 * POST /film/api/{token}/share/{id}/revoke: the patient revokes a link
 * they made. Only the session's link's own children: any other id, known
 * or not, gets the same 404. Audited as share_child_revoked (actor the
 * parent, the child's id in the detail) besides the store's
 * share_link_revoked of the child.
 */
static cp_status handle_share_revoke(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const char *id_text = http_request_param(req, "id");
    char session[FILM_SHARE_TOKEN_SIZE], detail[64], *end = NULL;
    film_share_link link;
    long long id = 0;
    cp_error err;
    cp_status st;

    if (!film_gate(a, req, &link, session, sizeof(session)))
        return CP_OK;
    if (id_text && id_text[0] >= '0' && id_text[0] <= '9') {
        errno = 0;
        id = strtoll(id_text, &end, 10);
        if (errno != 0 || *end != '\0')
            id = 0;
    }
    cp_error_clear(&err);
    st = id > 0 ? film_share_revoke_child(a->cfg.film, session, id, &err) : CP_ERR_NOT_FOUND;
    explicit_bzero(session, sizeof(session));
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 404, "not_found", "no such shared link");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    snprintf(detail, sizeof(detail), "{\"child_id\":%lld}", id);
    film_audit_detail(a, req, &link, AUDIT_EXPORT, AUDIT_DELETE, "share_child_revoked", detail);
    cp_log_info("api.film_child_revoked", "link=%" PRId64 " child=%lld", link.id, id);
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id,
                                                "revoked", 1));
}

/* --- a follow-up read ------------------------------------------------------------------------ */

/*
 * The patient asks for another read of a study: a new reading order for
 * the same study and requesting institution, routine, requested by no user
 * (0: the patient's link), with the question in its clinical notes, which
 * is how the page finds it again. It goes through dispatch_submit like any
 * order, so it enters the pool; the order store refuses a second open
 * order for a study (409), so there is at most one open follow-up.
 */
#define FOLLOWUP_NOTES "Follow-up requested by the patient: "
#define FOLLOWUP_QUESTION_MAX 1000

static bool is_followup(const order *o)
{
    return o->requested_by == 0 &&
           strncmp(o->clinical_notes, FOLLOWUP_NOTES, strlen(FOLLOWUP_NOTES)) == 0;
}

static json_t *followup_json(const order *o)
{
    char created[32];

    api_format_time(o->created_us, created);
    return json_pack("{s:I, s:s, s:s, s:s, s:s}", "order_id", (json_int_t)o->id,
                     "state", order_state_name(o->state), "requested", created,
                     "question", o->clinical_notes + strlen(FOLLOWUP_NOTES),
                     "study_uid", o->study_uid);
}

/* A record of the follow-up asked for; the question is not in it. */
static void followup_audit(api_service *a, http_request *req, const film_share_link *link,
                           const order *o)
{
    audit_record r;

    memset(&r, 0, sizeof(r));
    r.event = AUDIT_ORDER_RECORD;
    r.action = AUDIT_CREATE;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof(r.type), "share_followup_requested");
    snprintf(r.actor, sizeof(r.actor), "share:%" PRId64, link->id);
    snprintf(r.peer, sizeof(r.peer), "%.63s", http_request_peer(req));
    snprintf(r.object_kind, sizeof(r.object_kind), "order");
    snprintf(r.object_id, sizeof(r.object_id), "%" PRId64, o->id);
    snprintf(r.patient_id, sizeof(r.patient_id), "%.64s", link->patient_id);
    r.institution_id = o->requesting_id;
    snprintf(r.detail, sizeof(r.detail), "{\"study_uid\":\"%.64s\"}", o->study_uid);
    if (audit_write(a->cfg.audit, &r) != CP_OK)
        cp_log_warn("api.film_audit", "type=%s", r.type);
}

static cp_status followup_body(api_service *a, http_request *req, json_t *body)
{
    const char *question;
    film_share_link link;
    order prev, o;
    cp_error err;
    cp_status st;

    if (!film_gate(a, req, &link, NULL, 0) || !film_study(a, req, &link))
        return CP_OK;
    /* The patient's own link only: not a doctor's child link, not a de-identified one. */
    if (link.parent_id != 0 || link.created_by == 0 || link.deidentify)
        return api_respond_error(req, 403, "forbidden",
                                 "only the patient's own link may ask for a follow-up read");
    if (!json_is_object(body) ||
        !api_json_string(body, "question", FOLLOWUP_QUESTION_MAX, true, &question) ||
        strspn(question, " \t\r\n") == strlen(question))
        return api_respond_error(req, 400, "invalid", "question is 1 to 1000 bytes");
    if (!a->cfg.disp || !a->cfg.orders)
        return api_respond_error(req, 503, "unavailable", "reading is not offered here");
    if (!released_order(a, link.study_uid, &prev))
        return api_respond_error(req, 404, "not_found", "there is no released report");

    memset(&o, 0, sizeof(o));
    memcpy(o.study_uid, prev.study_uid, sizeof(o.study_uid));
    memcpy(o.patient_id, prev.patient_id, sizeof(o.patient_id));
    memcpy(o.issuer, prev.issuer, sizeof(o.issuer));
    memcpy(o.accession, prev.accession, sizeof(o.accession));
    memcpy(o.modality, prev.modality, sizeof(o.modality));
    memcpy(o.body_part, prev.body_part, sizeof(o.body_part));
    snprintf(o.clinical_notes, sizeof(o.clinical_notes), "%s%s", FOLLOWUP_NOTES, question);
    o.priority = ORDER_ROUTINE;
    o.requesting_id = prev.requesting_id;
    o.requested_by = 0;
    cp_error_clear(&err);
    st = dispatch_submit(a->cfg.disp, &o, &err);
    if (st == CP_ERR_EXISTS)
        return api_respond_error(req, 409, "exists", "the study is being read already");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    followup_audit(a, req, &link, &o);
    cp_log_info("api.film_followup", "link=%" PRId64 " order=%" PRId64, link.id, o.id);
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 201, followup_json(&o));
}

/* POST /film/api/{token}/followup[?study=]: {"question"} */
static cp_status handle_followup(http_request *req, void *ctx)
{
    if (!film_ready(ctx, req))
        return CP_OK;
    return api_read_json(ctx, req, followup_body);
}

typedef struct followup_walk {
    json_t *list;
} followup_walk;

static cp_status followup_one(void *ctx, const order *o)
{
    followup_walk *w = ctx;
    json_t *j;

    if (!is_followup(o))
        return CP_OK;
    j = followup_json(o);
    if (!j || json_array_insert_new(w->list, 0, j) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

/* GET /film/api/{token}/followup[?study=]: the study's follow-ups, newest first. */
static cp_status handle_followup_list(http_request *req, void *ctx)
{
    api_service *a = ctx;
    followup_walk w;
    film_share_link link;
    order_filter f;
    cp_error err;
    cp_status st;

    if (!film_gate(a, req, &link, NULL, 0) || !film_study(a, req, &link))
        return CP_OK;
    if (!a->cfg.orders)
        return api_respond_error(req, 503, "unavailable", "reading is not offered here");
    w.list = json_array();
    if (!w.list)
        return api_respond_json(req, 503, NULL);
    memset(&f, 0, sizeof(f));
    f.study_uid = link.study_uid;
    cp_error_clear(&err);
    st = order_list(a->cfg.orders, &f, followup_one, &w, &err);
    if (st != CP_OK) {
        json_decref(w.list);
        return api_respond_status(req, st, &err);
    }
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, json_pack("{s:o, s:b}", "followups", w.list,
                                                "may_ask", link.parent_id == 0 &&
                                                link.created_by != 0 && !link.deidentify));
}

/* --- who looked ------------------------------------------------------------------------------ */

typedef struct views_walk {
    json_t *views;
    int64_t link_id;
    bool own;
} views_walk;

static cp_status view_one(void *ctx, const audit_record *r)
{
    views_walk *w = ctx;
    char when[32];
    json_t *j;

    if (strcmp(r->type, "share_link_opened") != 0 && strcmp(r->type, "share_link_verified") != 0)
        return CP_OK;
    api_format_time(r->time_us, when);
    j = json_pack("{s:s, s:s, s:s, s:I}", "time", when,
                  "event", strcmp(r->type, "share_link_opened") == 0 ? "opened" : "verified",
                  "by", w->own ? "this_link" : "shared_link", "link_id",
                  (json_int_t)w->link_id);
    if (!j || json_array_append_new(w->views, j) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status child_one(void *ctx, const film_share_link *l)
{
    link_ids *c = ctx;

    if (c->count == API_FILM_CHILDREN_MAX)
        return CP_ERR_STOPPED;
    c->ids[c->count++] = l->id;
    return CP_OK;
}

static cp_status views_of(api_service *a, views_walk *w, cp_error *err)
{
    char actor[40];
    audit_filter f;

    snprintf(actor, sizeof(actor), "share:%" PRId64, w->link_id);
    memset(&f, 0, sizeof(f));
    f.actor = actor;
    f.newest_first = true;
    f.limit = API_FILM_VIEWS_MAX;
    return audit_query(a->cfg.audit, &f, view_one, w, err);
}

static cp_status handle_views(http_request *req, void *ctx)
{
    api_service *a = ctx;
    film_share_link link;
    film_share_filter ff;
    link_ids children;
    views_walk w;
    cp_error err;
    cp_status st;

    if (!film_gate(a, req, &link, NULL, 0))
        return CP_OK;
    w.views = json_array();
    if (!w.views)
        return api_respond_json(req, 503, NULL);
    w.link_id = link.id;
    w.own = true;
    cp_error_clear(&err);
    st = views_of(a, &w, &err);
    memset(&ff, 0, sizeof(ff));
    ff.parent_id = link.id;
    children.count = 0;
    if (st == CP_OK)
        st = film_share_list(a->cfg.film, &ff, child_one, &children, &err);
    w.own = false;
    for (size_t i = 0; st == CP_OK && i < children.count; i++) {
        w.link_id = children.ids[i];
        st = views_of(a, &w, &err);
    }
    if (st != CP_OK) {
        json_decref(w.views);
        return api_respond_status(req, st, &err);
    }
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, json_pack("{s:o, s:I}", "views", w.views,
                                                "link_views", (json_int_t)link.views));
}

/* POST /film/api/{token}/logout: the patient leaves; the cookie goes. */
static cp_status handle_logout(http_request *req, void *ctx)
{
    api_service *a = ctx;
    char session[FILM_SHARE_TOKEN_SIZE];
    film_share_link link;
    cp_error err;

    if (!film_gate(a, req, &link, session, sizeof(session)))
        return CP_OK;
    cp_error_clear(&err);
    film_share_session_end(a->cfg.film, session, &err);
    explicit_bzero(session, sizeof(session));
    http_response_header(req, "Set-Cookie",
                         FILM_COOKIE "=; Path=/film/; HttpOnly; SameSite=Strict; Max-Age=0");
    return api_respond_empty(req);
}

/* Anything else under /film/api/: the same 404 as a bad token, not the page. */
static cp_status handle_unknown(http_request *req, void *ctx)
{
    (void)ctx;
    return respond_gone(req);
}

/* --- routes ---------------------------------------------------------------------------------- */

/* The patient's page: web/dist/film.html for every /film/ path the API did not take. */
static cp_status register_page(api_service *a, http_server *s)
{
    char root[FILM_PATH_MAX];
    http_static_config sc;
    cp_error err;

    memset(&sc, 0, sizeof(sc));
    sc.prefix = "/film";
    sc.fallback = "film.html";
    sc.missing = "the patient's page is not built (scripts/console.sh)";
    if (http_static_locate("web/dist", "film.html", root, sizeof(root)) == CP_OK)
        sc.root = root;
    cp_error_clear(&err);
    return http_static_register(s, &sc, &a->film_page, &err);
}

cp_status api_film_register(api_service *a, http_server *s)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        unsigned flags;
        http_handler_fn fn;
    } routes[] = {
        { HTTP_GET, "/api/orders/{id}/film", 0, handle_order_film },
        { HTTP_POST, "/api/orders/{id}/film", 0, handle_order_reissue },
        { HTTP_POST, "/api/orders/{id}/film/revoke", 0, handle_order_revoke },
        { HTTP_GET, "/api/orders/{id}/film/sheet", 0, api_film_sheet_handle_order },
        { HTTP_GET, "/film/api/{token}", HTTP_ROUTE_PUBLIC, handle_open },
        { HTTP_POST, "/film/api/{token}/verify", HTTP_ROUTE_PUBLIC, handle_verify },
        { HTTP_GET, "/film/api/{token}/link", HTTP_ROUTE_PUBLIC, handle_link },
        { HTTP_GET, "/film/api/{token}/report", HTTP_ROUTE_PUBLIC, handle_report },
        { HTTP_GET, "/film/api/{token}/report.pdf", HTTP_ROUTE_PUBLIC, handle_report_pdf },
        { HTTP_GET, "/film/api/{token}/film.pdf", HTTP_ROUTE_PUBLIC, api_film_sheet_handle_pdf },
        { HTTP_GET, "/film/api/{token}/film.png", HTTP_ROUTE_PUBLIC, api_film_sheet_handle_png },
        { HTTP_GET, "/film/api/{token}/series", HTTP_ROUTE_PUBLIC, handle_series },
        { HTTP_GET, "/film/api/{token}/studies", HTTP_ROUTE_PUBLIC, handle_studies },
        { HTTP_GET, "/film/api/{token}/followup", HTTP_ROUTE_PUBLIC, handle_followup_list },
        { HTTP_POST, "/film/api/{token}/followup", HTTP_ROUTE_PUBLIC, handle_followup },
        { HTTP_GET, "/film/api/{token}/instances/{sop}/rendered", HTTP_ROUTE_PUBLIC,
          handle_rendered },
        { HTTP_GET, "/film/api/{token}/instances/{sop}/thumbnail", HTTP_ROUTE_PUBLIC,
          handle_thumbnail },
        { HTTP_GET, "/film/api/{token}/instances/{sop}/file", HTTP_ROUTE_PUBLIC,
          handle_instance_file },
        { HTTP_POST, "/film/api/{token}/share", HTTP_ROUTE_PUBLIC, handle_share },
        { HTTP_GET, "/film/api/{token}/shares", HTTP_ROUTE_PUBLIC, handle_shares },
        { HTTP_POST, "/film/api/{token}/share/{id}/revoke", HTTP_ROUTE_PUBLIC,
          handle_share_revoke },
        { HTTP_GET, "/film/api/{token}/views", HTTP_ROUTE_PUBLIC, handle_views },
        { HTTP_POST, "/film/api/{token}/logout", HTTP_ROUTE_PUBLIC, handle_logout },
        { HTTP_GET, "/film/api/{token}/download.zip", HTTP_ROUTE_PUBLIC, api_film_download },
        { HTTP_GET | HTTP_POST | HTTP_PUT | HTTP_DELETE | HTTP_PATCH, "/film/api/*",
          HTTP_ROUTE_PUBLIC, handle_unknown },
    };

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        cp_status st = http_server_route(s, routes[i].methods, routes[i].pattern,
                                         routes[i].flags, routes[i].fn, a);

        if (st != CP_OK)
            return st;
    }
    return register_page(a, s);
}

/* Added for the study download (api_film_download.c). */
bool api_film_gate_study(api_service *a, http_request *req, film_share_link *link)
{
    return film_gate(a, req, link, NULL, 0) && film_study(a, req, link);
}

bool api_film_report_path(api_service *a, const char *study_uid, char *path, size_t cap)
{
    order o;

    if (!a->cfg.film_dir || !released_order(a, study_uid, &o))
        return false;
    pdf_path(a, o.id, path, cap);
    return true;
}
