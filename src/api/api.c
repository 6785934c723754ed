/*
 * api.c - the REST API service (docs/api.md): its creation, the routes'
 * registration, the authentication hook of the whole web service, the
 * audit records of requests (the active participant of DICOM PS3.15 A.5,
 * filled from the principal), GET /api/health, and the helpers the other
 * api_*.c files share: JSON bodies in and out, the error shape, times as
 * ISO 8601 UTC (RFC 3339) and the JSON forms of users and institutions.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api_audit.h"
#include "api/api_directory.h"
#include "api/api_internal.h"
#include "api/api_film.h"
#include "api/api_intake.h"
#include "api/api_kiosk.h"
#include "api/api_orders.h"
#include "api/api_reports.h"
#include "api/api_session.h"
#include "api/api_users.h"
#include "core/alloc.h"
#include "core/log.h"
#include "http/static.h"

/* --- the service ------------------------------------------------------------- */

cp_status api_create(const api_config *cfg, api_service **out, cp_error *err)
{
    api_service *a;

    *out = NULL;
    if (!cfg || !cfg->dir || !cfg->sessions || !cfg->audit)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "api_create: directory, sessions and audit are required");
    a = cp_calloc(1, sizeof(*a));
    if (!a)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "api_create: out of memory");
    a->cfg = *cfg;
    a->audit_source = cp_strdup(cfg->audit_source ? cfg->audit_source : "cloudpacs");
    if (!a->audit_source) {
        cp_free(a);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "api_create: out of memory");
    }
    a->cfg.audit_source = a->audit_source;
    pthread_mutex_init(&a->fail_lock, NULL);
    *out = a;
    return CP_OK;
}

void api_destroy(api_service *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->fail_lock);
    http_static_destroy(a->film_page);
    cp_free(a->audit_source);
    cp_free(a);
}

static cp_status handle_health(http_request *req, void *ctx);

cp_status api_register(api_service *a, http_server *s, cp_error *err)
{
    cp_status st;

    st = http_server_route(s, HTTP_GET, "/api/health", HTTP_ROUTE_PUBLIC, handle_health, a);
    if (st == CP_OK)
        st = api_session_register(a, s);
    if (st == CP_OK)
        st = api_directory_register(a, s);
    if (st == CP_OK)
        st = api_users_register(a, s);
    if (st == CP_OK)
        st = api_audit_register(a, s);
    if (st == CP_OK)
        st = api_orders_register(a, s);
    if (st == CP_OK)
        st = api_reports_register(a, s);
    if (st == CP_OK)
        st = api_film_register(a, s);
    if (st == CP_OK)
        st = api_intake_register(a, s);
    if (st == CP_OK)
        st = api_kiosk_register(a, s);
    if (st != CP_OK)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "api_register: a route could not be added");
    return CP_OK;
}

/* --- authentication ---------------------------------------------------------- */

static void free_principal(void *p)
{
    principal_free(p);
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The value of cookie `name` in a Cookie header (RFC 6265 5.4), copied. */
static bool cookie_value(const char *header, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = header;

    while (p && *p) {
        while (*p == ' ' || *p == ';')
            p++;
        if (strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t len = strcspn(v, ";");

            while (len > 0 && v[len - 1] == ' ')
                len--;
            if (len == 0 || len >= cap)
                return false;
            memcpy(out, v, len);
            out[len] = '\0';
            return true;
        }
        p = strchr(p, ';');
    }
    return false;
}

bool api_request_token(const http_request *req, char *out, size_t cap, bool *from_cookie)
{
    const char *h = http_request_header(req, "Authorization");
    const char *cookie = http_request_header(req, "Cookie");

    *from_cookie = false;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        size_t len;

        h += 7;
        while (*h == ' ')
            h++;
        len = strlen(h);
        while (len > 0 && h[len - 1] == ' ')
            len--;
        if (len == 0 || len >= cap)
            return false;
        memcpy(out, h, len);
        out[len] = '\0';
        return true;
    }
    if (cookie && cookie_value(cookie, API_COOKIE_NAME, out, cap)) {
        *from_cookie = true;
        return true;
    }
    return false;
}

/*
 * Whether a rejected token from this peer should be written to the audit
 * trail now: at most one record per peer per API_AUTH_FAIL_INTERVAL_S, so
 * that a flood of bad tokens cannot fill the trail. The oldest entry of
 * the table makes room for a new peer.
 */
static bool fail_should_record(api_service *a, const char *peer)
{
    int64_t now = now_us(), interval = (int64_t)API_AUTH_FAIL_INTERVAL_S * 1000000;
    api_fail_entry *slot = NULL;
    bool record = true;

    pthread_mutex_lock(&a->fail_lock);
    for (size_t i = 0; i < API_AUTH_FAIL_PEERS; i++) {
        api_fail_entry *e = &a->fails[i];

        if (strcmp(e->peer, peer) == 0 && e->peer[0]) {
            slot = e;
            record = now - e->at_us >= interval;
            break;
        }
        if (!slot || e->at_us < slot->at_us)
            slot = e;
    }
    if (record) {
        snprintf(slot->peer, sizeof(slot->peer), "%s", peer);
        slot->at_us = now;
    }
    pthread_mutex_unlock(&a->fail_lock);
    return record;
}

static void audit_rejected(api_service *a, const http_request *req)
{
    const char *peer = http_request_peer(req);
    audit_record r = { 0 };

    if (!fail_should_record(a, peer ? peer : ""))
        return;
    r.event = AUDIT_USER_AUTHENTICATION;
    r.action = AUDIT_EXECUTE;
    r.outcome = AUDIT_MINOR_FAILURE;
    snprintf(r.type, sizeof(r.type), "token_rejected");
    snprintf(r.actor, sizeof(r.actor), "anonymous");
    api_audit(a, req, &r);
}

/* What a session that must first enrol a second factor may reach. */
static bool enrol_route(const http_request *req)
{
    const char *path = http_request_path(req);

    if (strcmp(path, "/api/me") == 0 || strcmp(path, "/api/me/totp") == 0 ||
        strcmp(path, "/api/me/totp/confirm") == 0)
        return true;
    return strcmp(path, "/api/session") == 0 && http_request_method(req) == HTTP_DELETE;
}

static bool safe_method(const http_request *req)
{
    http_method m = http_request_method(req);

    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS;
}

http_auth_decision api_authenticate(http_request *req, void *ctx)
{
    api_service *a = ctx;
    char token[SESSION_TOKEN_MAX + 1];
    const char *guard, *peer = http_request_peer(req);
    bool from_cookie;
    principal *p = NULL;
    cp_status st;

    if (!api_request_token(req, token, sizeof(token), &from_cookie))
        return HTTP_AUTH_UNAUTHENTICATED;

    /* A cookie rides along on cross-site requests; the header cannot. */
    guard = http_request_header(req, "X-Requested-With");
    if (from_cookie && !safe_method(req) && (!guard || strcmp(guard, "cloudpacs") != 0)) {
        explicit_bzero(token, sizeof(token));
        api_respond_error(req, 403, "csrf_guard",
                          "a cookie-authenticated change needs X-Requested-With: cloudpacs");
        return HTTP_AUTH_RESPONDED;
    }

    st = session_resolve(a->cfg.sessions, token, peer ? peer : "", &p, NULL);
    explicit_bzero(token, sizeof(token));
    if (st == CP_ERR_UNAUTHENTICATED) {
        audit_rejected(a, req);
        return HTTP_AUTH_UNAUTHENTICATED;
    }
    if (st != CP_OK)
        return HTTP_AUTH_UNAVAILABLE;
    http_request_set_identity(req, p, free_principal);

    if (p->enrol_only && !enrol_route(req)) {
        api_respond_error(req, 403, "enrol_required",
                          "enrol a second factor first (POST /api/me/totp)");
        return HTTP_AUTH_RESPONDED;
    }
    if ((p->roles & ROLE_KIOSK) && !api_kiosk_route(req)) {
        api_respond_error(req, 403, "forbidden", "a print kiosk prints only");
        return HTTP_AUTH_RESPONDED;
    }
    return HTTP_AUTH_ALLOW;
}

const principal *api_principal(const http_request *req)
{
    return http_request_identity(req);
}

/* --- audit ------------------------------------------------------------------- */

void api_audit(api_service *a, const http_request *req, audit_record *r)
{
    const principal *p = api_principal(req);
    const char *peer = http_request_peer(req);
    cp_status st;

    if (p) {
        r->user_id = p->kind == PRINCIPAL_USER ? p->id : 0;
        snprintf(r->actor, sizeof(r->actor), "%s", p->name);
        if (directory_roles_format(p->roles, r->actor_roles, sizeof(r->actor_roles)) != CP_OK)
            r->actor_roles[0] = '\0';
        r->actor_institution_id = p->institution_id;
        snprintf(r->session_id, sizeof(r->session_id), "%s", p->session_id);
    }
    if (!r->actor[0])
        snprintf(r->actor, sizeof(r->actor), "anonymous");
    if (peer)
        snprintf(r->peer, sizeof(r->peer), "%s", peer);

    st = audit_write(a->cfg.audit, r);
    if (st != CP_OK)
        cp_log_warn("api.audit", "status=%s type=%s request=%s", cp_status_name(st), r->type,
                    http_request_id(req));
}

void api_audit_change(api_service *a, const http_request *req, audit_event event,
                      audit_action action, const char *type, const char *object_kind,
                      int64_t object_id, int64_t institution_id, const char *detail)
{
    audit_record r = { 0 };

    r.event = event;
    r.action = action;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof(r.type), "%s", type);
    snprintf(r.object_kind, sizeof(r.object_kind), "%s", object_kind);
    if (object_id)
        snprintf(r.object_id, sizeof(r.object_id), "%lld", (long long)object_id);
    r.institution_id = institution_id;
    if (detail)
        snprintf(r.detail, sizeof(r.detail), "%s", detail);
    api_audit(a, req, &r);
}

void api_invalidate(api_service *a, int64_t user_id)
{
    cp_status st = session_invalidate(a->cfg.sessions, user_id, NULL);

    if (st != CP_OK)
        cp_log_warn("api.invalidate", "status=%s user=%lld", cp_status_name(st),
                    (long long)user_id);
}

/* --- health ------------------------------------------------------------------ */

static cp_status handle_health(http_request *req, void *ctx)
{
    api_service *a = ctx;
    bool redis_ok = a->cfg.kv && kv_ping(a->cfg.kv, NULL) == CP_OK;
    bool db_ok = false;
    int version = 0;
    json_t *o;

    if (a->cfg.idx)
        db_ok = index_schema_version(a->cfg.idx, &version, NULL) == CP_OK;
    o = json_pack("{s:s, s:s, s:s}", "status", redis_ok && db_ok ? "ok" : "degraded",
                  "redis", redis_ok ? "ok" : "unavailable",
                  "database", db_ok ? "ok" : "unavailable");
    return api_respond_json(req, redis_ok && db_ok ? 200 : 503, o);
}

/* --- responses ----------------------------------------------------------------- */

cp_status api_respond_json(http_request *req, int status, json_t *value)
{
    char *text;
    cp_status st;

    if (!value)
        return api_respond_error(req, 503, "unavailable", "out of memory");
    text = json_dumps(value, JSON_COMPACT);
    json_decref(value);
    if (!text)
        return api_respond_error(req, 503, "unavailable", "out of memory");
    st = http_respond_buffer(req, status, "application/json", text, strlen(text));
    free(text);
    return st;
}

cp_status api_respond_error(http_request *req, int status, const char *reason,
                            const char *message)
{
    json_t *o = json_pack("{s:s, s:i, s:s}", "error", message ? message : "",
                          "status", status, "reason", reason);
    char *text;
    cp_status st;

    if (!o)
        return http_respond_error(req, status, message);
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return http_respond_error(req, status, message);
    st = http_respond_buffer(req, status, "application/json", text, strlen(text));
    free(text);
    return st;
}

cp_status api_respond_forbidden(http_request *req)
{
    return api_respond_error(req, 403, "forbidden", "not allowed for this identity");
}

cp_status api_respond_status(http_request *req, cp_status st, const cp_error *err)
{
    const char *msg = err && err->detail[0] ? err->detail : cp_status_summary(st);

    switch (st) {
    case CP_ERR_NOT_FOUND:
        return api_respond_error(req, 404, "not_found", msg);
    case CP_ERR_EXISTS:
        return api_respond_error(req, 409, "exists", msg);
    case CP_ERR_INVALID:
    case CP_ERR_MALFORMED:
    case CP_ERR_LIMIT:
        return api_respond_error(req, 400, "invalid", msg);
    case CP_ERR_FORBIDDEN:
        return api_respond_error(req, 403, "forbidden", msg);
    case CP_ERR_UNAVAILABLE:
    case CP_ERR_NOMEM:
        http_response_header(req, "Retry-After", "5");
        return api_respond_error(req, 503, "unavailable", cp_status_summary(st));
    default:
        return api_respond_error(req, 500, "internal", cp_status_summary(st));
    }
}

cp_status api_respond_empty(http_request *req)
{
    return http_respond_buffer(req, 204, NULL, "", 0);
}

/* --- JSON bodies ------------------------------------------------------------------ */

typedef struct body_ctx {
    api_service *a;
    api_body_fn fn;
    cp_buf buf;
} body_ctx;

static void body_free(void *p)
{
    body_ctx *b = p;

    if (b->buf.data)
        explicit_bzero(b->buf.data, b->buf.cap);
    cp_buf_free(&b->buf);
    cp_free(b);
}

static cp_status body_chunk(http_request *req, const uint8_t *chunk, size_t len, void *ctx)
{
    body_ctx *b = ctx;

    (void)req;
    if (len > API_BODY_MAX - b->buf.len)
        return CP_ERR_LIMIT;
    return cp_buf_append(&b->buf, chunk, len);
}

static cp_status body_done(http_request *req, void *ctx)
{
    body_ctx *b = ctx;
    json_error_t jerr;
    json_t *body;
    cp_status st;

    body = json_loadb((const char *)b->buf.data, b->buf.len, JSON_REJECT_DUPLICATES, &jerr);
    if (b->buf.data)
        explicit_bzero(b->buf.data, b->buf.len);
    if (!body)
        return api_respond_error(req, 400, "bad_json", "the body is not JSON");
    st = b->fn(b->a, req, body);
    json_decref(body);
    return st;
}

cp_status api_read_json(api_service *a, http_request *req, api_body_fn fn)
{
    int64_t declared = http_request_content_length(req);
    body_ctx *b;
    cp_status st;

    if (declared > (int64_t)API_BODY_MAX)
        return api_respond_error(req, 413, "too_large", "the body is too large");
    b = cp_calloc(1, sizeof(*b));
    if (!b)
        return api_respond_error(req, 503, "unavailable", "out of memory");
    b->a = a;
    b->fn = fn;
    http_request_on_cleanup(req, body_free, b);
    st = http_request_read_body(req, body_chunk, body_done, b);
    if (st != CP_OK)
        return api_respond_error(req, 500, "internal", "the body could not be read");
    return CP_OK;
}

bool api_json_string(const json_t *obj, const char *key, size_t max, bool required,
                     const char **out)
{
    const json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return !required;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return false;
    *out = json_string_value(v);
    return true;
}

bool api_json_int(const json_t *obj, const char *key, int64_t min, int64_t max,
                  int64_t *out, bool *present)
{
    const json_t *v = json_object_get(obj, key);

    *present = false;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return false;
    *out = json_integer_value(v);
    *present = true;
    return true;
}

bool api_json_bool(const json_t *obj, const char *key, bool *out, bool *present)
{
    const json_t *v = json_object_get(obj, key);

    *present = false;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_boolean(v))
        return false;
    *out = json_is_true(v);
    *present = true;
    return true;
}

/* --- small conversions -------------------------------------------------------------- */

bool api_parse_id(const char *text, int64_t *out)
{
    char *end;
    long long v;

    if (!text || !isdigit((unsigned char)text[0]))
        return false;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno || *end || v <= 0)
        return false;
    *out = v;
    return true;
}

bool api_param_id(http_request *req, int64_t *out)
{
    if (api_parse_id(http_request_param(req, "id"), out))
        return true;
    api_respond_error(req, 404, "not_found", "no such id");
    return false;
}

void api_format_time(int64_t us, char out[32])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    out[0] = '\0';
    if (us <= 0 || !gmtime_r(&t, &tm))
        return;
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* n digits at p as a number, or -1. */
static int digits(const char *p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

bool api_parse_time(const char *text, bool end_of_day, int64_t *us)
{
    struct tm tm = { 0 };
    size_t len = strlen(text);
    int y, mo, d, h = 0, mi = 0, s = 0;
    bool date_only = false;
    time_t t;

    if (len == 8) {
        y = digits(text, 4), mo = digits(text + 4, 2), d = digits(text + 6, 2);
        date_only = true;
    } else if (len >= 10 && text[4] == '-' && text[7] == '-') {
        y = digits(text, 4), mo = digits(text + 5, 2), d = digits(text + 8, 2);
        date_only = len == 10;
        if (!date_only) {
            if (len < 16 || (text[10] != 'T' && text[10] != ' ') || text[13] != ':')
                return false;
            h = digits(text + 11, 2), mi = digits(text + 14, 2);
            if (len >= 19 && text[16] == ':')
                s = digits(text + 17, 2);
            else if (len > 16 && text[16] != 'Z')
                return false;
            if (len > 19 && strcmp(text + 19, "Z") != 0)
                return false;
        }
    } else {
        return false;
    }
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || s < 0 || s > 60)
        return false;

    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *us = (int64_t)t * 1000000;
    if (date_only && end_of_day)
        *us += INT64_C(86400) * 1000000 - 1;
    return true;
}

json_t *api_roles_json(unsigned roles)
{
    json_t *arr = json_array();

    for (unsigned bit = 1; arr && bit <= ROLE_ALL; bit <<= 1) {
        if ((roles & bit) && directory_role_name(bit))
            json_array_append_new(arr, json_string(directory_role_name(bit)));
    }
    return arr;
}

bool api_roles_from_json(const json_t *value, unsigned *roles)
{
    size_t i;
    const json_t *v;

    *roles = 0;
    if (!json_is_array(value))
        return false;
    json_array_foreach(value, i, v) {
        unsigned bit = json_is_string(v) ? directory_role_parse(json_string_value(v)) : 0;

        if (!bit)
            return false;
        *roles |= bit;
    }
    return true;
}

json_t *api_user_json(const directory_user *u)
{
    char created[32];

    api_format_time(u->created_us, created);
    return json_pack("{s:I, s:s, s:s, s:I, s:o, s:i, s:b, s:b, s:b, s:s}",
                     "id", (json_int_t)u->id, "username", u->username,
                     "display_name", u->display_name,
                     "institution_id", (json_int_t)u->institution_id,
                     "roles", api_roles_json(u->roles), "title", u->title,
                     "may_self_approve", u->may_self_approve, "disabled", u->disabled,
                     "totp_enabled", u->totp_enabled, "created", created);
}

json_t *api_institution_json(const directory_institution *inst)
{
    const char *kind = directory_kind_name(inst->kind);

    return json_pack("{s:I, s:I, s:s, s:s, s:s, s:b}", "id", (json_int_t)inst->id,
                     "parent_id", (json_int_t)inst->parent_id, "kind", kind ? kind : "",
                     "code", inst->code, "name", inst->name, "disabled", inst->disabled);
}

bool api_manages(const principal *p, int64_t institution_id)
{
    if (institution_id == 0)
        return p->kind == PRINCIPAL_SERVICE || (p->roles & ROLE_SYSTEM_ADMIN);
    return policy_manages_institution(p, institution_id);
}
