/*
 * api_directory.c - the institutions, contracts, API tokens and DICOM
 * application entities of the directory under /api/ (docs/api.md). Each
 * route asks the policy (auth/policy.h) before it acts, drops the cached
 * principals a change affects, and writes the change to the audit trail as
 * a Security Alert (PS3.15 A.5.3.10). Application entities are those of
 * PS3.8 (AE titles of at most 16 characters, PS3.5 6.2).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "api/api_directory.h"
#include "api/api_internal.h"

/* --- institutions ------------------------------------------------------------- */

/*
 * Institution names are no patient data: the separated admins see them
 * all; others see their own, those they manage and those whose studies a
 * contract opens to them.
 */
static bool institution_visible(const principal *p, int64_t id)
{
    if (p->kind == PRINCIPAL_SERVICE || (p->roles & ROLE_SEPARATED))
        return true;
    return id == p->institution_id || policy_manages_institution(p, id) ||
           policy_study_visible(p, id, NULL);
}

typedef struct inst_list {
    const principal *p;
    json_t *arr;
} inst_list;

static cp_status inst_one(void *ctx, const directory_institution *inst)
{
    inst_list *l = ctx;

    if (institution_visible(l->p, inst->id) &&
        json_array_append_new(l->arr, api_institution_json(inst)) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_inst_list(http_request *req, void *ctx)
{
    api_service *a = ctx;
    inst_list l = { api_principal(req), json_array() };
    cp_error err;
    cp_status st;

    if (!l.arr)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = directory_institution_list(a->cfg.dir, inst_one, &l, &err);
    if (st != CP_OK) {
        json_decref(l.arr);
        return api_respond_status(req, st, &err);
    }
    return api_respond_json(req, 200, l.arr);
}

static cp_status handle_inst_get(http_request *req, void *ctx)
{
    api_service *a = ctx;
    directory_institution inst;
    int64_t id;
    cp_error err;
    cp_status st;

    if (!api_param_id(req, &id))
        return CP_OK;
    if (!institution_visible(api_principal(req), id))
        return api_respond_forbidden(req);
    cp_error_clear(&err);
    st = directory_institution_get(a->cfg.dir, id, &inst, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    return api_respond_json(req, 200, api_institution_json(&inst));
}

/* A code of [A-Za-z0-9_-], 1 to DIRECTORY_CODE_MAX characters. */
static bool code_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > DIRECTORY_CODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    }
    return true;
}

static cp_status inst_create_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *kind, *code, *name;
    directory_institution inst = { 0 };
    int64_t parent = 0;
    bool has_parent;
    cp_error err;
    cp_status st;

    if (!json_is_object(body) ||
        !api_json_int(body, "parent_id", 0, INT64_MAX, &parent, &has_parent) ||
        !api_json_string(body, "kind", 16, true, &kind) || !directory_kind_parse(kind) ||
        !api_json_string(body, "code", DIRECTORY_CODE_MAX, true, &code) || !code_ok(code) ||
        !api_json_string(body, "name", DIRECTORY_NAME_MAX, true, &name) || !name[0])
        return api_respond_error(req, 400, "invalid",
                                 "kind (centre, hospital, clinic), code ([A-Za-z0-9_-]) "
                                 "and name are required");
    if (!api_manages(p, parent))
        return api_respond_forbidden(req);

    inst.parent_id = parent;
    inst.kind = directory_kind_parse(kind);
    snprintf(inst.code, sizeof(inst.code), "%s", code);
    snprintf(inst.name, sizeof(inst.name), "%s", name);
    cp_error_clear(&err);
    st = directory_institution_create(a->cfg.dir, &inst, &err);
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 400, "invalid", "no such parent institution");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    /* A new child widens the subtree of every admin above it. */
    api_invalidate(a, 0);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_CREATE, "institution_created",
                     "institution", inst.id, inst.id, NULL);
    return api_respond_json(req, 201, api_institution_json(&inst));
}

static cp_status handle_inst_create(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_INSTITUTION_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, inst_create_body);
}

static cp_status inst_update_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *kind, *name;
    directory_institution inst;
    int64_t id, parent = 0;
    bool has_parent, has_dis, dis = false;
    cp_error err;
    cp_status st;

    if (!api_param_id(req, &id))
        return CP_OK;
    if (!api_manages(p, id))
        return api_respond_forbidden(req);
    cp_error_clear(&err);
    st = directory_institution_get(a->cfg.dir, id, &inst, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    if (!json_is_object(body) ||
        !api_json_int(body, "parent_id", 0, INT64_MAX, &parent, &has_parent) ||
        !api_json_string(body, "kind", 16, false, &kind) ||
        (kind && !directory_kind_parse(kind)) ||
        !api_json_string(body, "name", DIRECTORY_NAME_MAX, false, &name) ||
        (name && !name[0]) || !api_json_bool(body, "disabled", &dis, &has_dis))
        return api_respond_error(req, 400, "invalid", "a field has the wrong type");

    /* Moving an institution takes it out of one subtree into another. */
    if (has_parent && parent != inst.parent_id &&
        (!api_manages(p, inst.parent_id) || !api_manages(p, parent)))
        return api_respond_forbidden(req);

    if (has_parent)
        inst.parent_id = parent;
    if (kind)
        inst.kind = directory_kind_parse(kind);
    if (name)
        snprintf(inst.name, sizeof(inst.name), "%s", name);
    if (has_dis)
        inst.disabled = dis;
    st = directory_institution_update(a->cfg.dir, &inst, &err);
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 400, "invalid", "no such parent institution");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    api_invalidate(a, 0);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "institution_updated",
                     "institution", inst.id, inst.id, NULL);
    return api_respond_json(req, 200, api_institution_json(&inst));
}

static cp_status handle_inst_update(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_INSTITUTION_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, inst_update_body);
}

/* --- contracts ------------------------------------------------------------------- */

/* ["CR", "DX"] from "CR,DX". */
static json_t *list_json(const char *list)
{
    json_t *arr = json_array();
    const char *p = list;

    while (arr && *p) {
        size_t n = strcspn(p, ",");

        if (n > 0)
            json_array_append_new(arr, json_stringn(p, n));
        p += n + (p[n] == ',');
    }
    return arr;
}

/* "CR,DX" from ["CR", "DX"]: values of 1-16 of [A-Za-z0-9_], within cap. */
static bool list_from_json(const json_t *v, char *out, size_t cap)
{
    size_t i, len = 0;
    const json_t *e;

    out[0] = '\0';
    if (!json_is_array(v))
        return false;
    json_array_foreach(v, i, e) {
        const char *s = json_is_string(e) ? json_string_value(e) : NULL;
        size_t n = s ? strlen(s) : 0;

        if (!s || n == 0 || n > 16 || len + n + 2 > cap)
            return false;
        for (size_t k = 0; k < n; k++) {
            if (!isalnum((unsigned char)s[k]) && s[k] != '_')
                return false;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? "," : "", s);
    }
    return true;
}

/* "" or a date as YYYYMMDD. */
static bool date_ok(const char *s)
{
    if (!s[0])
        return true;
    if (strlen(s) != 8)
        return false;
    for (int i = 0; i < 8; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

static json_t *contract_json(const directory_contract *c)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:s, s:s, s:o, s:o, s:b}", "id", (json_int_t)c->id,
                     "user_id", (json_int_t)c->user_id,
                     "requesting_id", (json_int_t)c->requesting_id,
                     "reading_id", (json_int_t)c->reading_id, "start_date", c->start_date,
                     "end_date", c->end_date, "modalities", list_json(c->modalities),
                     "body_parts", list_json(c->body_parts), "revoked", c->revoked);
}

/*
 * A contract is managed under the registration it is read with: by who
 * manages reading_id. Who manages either side may see it, and so may the
 * radiologist it names.
 */
static bool contract_visible(const principal *p, const directory_contract *c)
{
    if (p->kind == PRINCIPAL_USER && p->id == c->user_id)
        return true;
    return policy_allows(p, POLICY_CONTRACT_MANAGE) &&
           (api_manages(p, c->reading_id) || api_manages(p, c->requesting_id));
}

typedef struct contract_list {
    const principal *p;
    json_t *arr;
} contract_list;

static cp_status contract_one(void *ctx, const directory_contract *c)
{
    contract_list *l = ctx;

    if (contract_visible(l->p, c) && json_array_append_new(l->arr, contract_json(c)) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_contract_list(http_request *req, void *ctx)
{
    api_service *a = ctx;
    contract_list l = { api_principal(req), NULL };
    const char *user = http_request_query(req, "user");
    const char *inst = http_request_query(req, "institution");
    int64_t user_id = 0, inst_id = 0;
    cp_error err;
    cp_status st;

    if ((user && !api_parse_id(user, &user_id)) || (inst && !api_parse_id(inst, &inst_id)))
        return api_respond_error(req, 400, "invalid", "user and institution must be ids");
    if (!user_id && !inst_id) {
        if (l.p->kind != PRINCIPAL_USER || policy_allows(l.p, POLICY_CONTRACT_MANAGE))
            return api_respond_error(req, 400, "invalid", "give user or institution");
        user_id = l.p->id;
    }
    if (!policy_allows(l.p, POLICY_CONTRACT_MANAGE) &&
        !(l.p->kind == PRINCIPAL_USER && user_id == l.p->id))
        return api_respond_forbidden(req);

    l.arr = json_array();
    if (!l.arr)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = directory_contract_list(a->cfg.dir, user_id, inst_id, contract_one, &l, &err);
    if (st != CP_OK) {
        json_decref(l.arr);
        return api_respond_status(req, st, &err);
    }
    return api_respond_json(req, 200, l.arr);
}

/* Applies the members a PATCH may change; false for a bad one. */
static bool contract_apply(const json_t *body, directory_contract *c)
{
    const json_t *mods = json_object_get(body, "modalities");
    const json_t *parts = json_object_get(body, "body_parts");
    const char *end;
    bool revoked, has_revoked;

    if (!api_json_string(body, "end_date", 8, false, &end) || (end && !date_ok(end)) ||
        !api_json_bool(body, "revoked", &revoked, &has_revoked))
        return false;
    if (mods && !list_from_json(mods, c->modalities, sizeof(c->modalities)))
        return false;
    if (parts && !list_from_json(parts, c->body_parts, sizeof(c->body_parts)))
        return false;
    if (end)
        snprintf(c->end_date, sizeof(c->end_date), "%s", end);
    if (has_revoked)
        c->revoked = revoked;
    return true;
}

static cp_status contract_create_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    directory_contract c = { 0 };
    const char *start;
    bool has_user, has_req, has_read;
    cp_error err;
    cp_status st;

    if (!json_is_object(body) ||
        !api_json_int(body, "user_id", 1, INT64_MAX, &c.user_id, &has_user) ||
        !api_json_int(body, "requesting_id", 1, INT64_MAX, &c.requesting_id, &has_req) ||
        !api_json_int(body, "reading_id", 1, INT64_MAX, &c.reading_id, &has_read) ||
        !has_user || !has_req || !has_read ||
        !api_json_string(body, "start_date", 8, false, &start) || (start && !date_ok(start)) ||
        !contract_apply(body, &c))
        return api_respond_error(req, 400, "invalid",
                                 "user_id, requesting_id and reading_id are required; "
                                 "dates are YYYYMMDD, lists of codes");
    if (!api_manages(p, c.reading_id))
        return api_respond_forbidden(req);

    if (start)
        snprintf(c.start_date, sizeof(c.start_date), "%s", start);
    cp_error_clear(&err);
    st = directory_contract_create(a->cfg.dir, &c, &err);
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 400, "invalid", "no such user or institution");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    api_invalidate(a, c.user_id);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_CREATE, "contract_created",
                     "contract", c.id, c.requesting_id, NULL);
    return api_respond_json(req, 201, contract_json(&c));
}

static cp_status handle_contract_create(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_CONTRACT_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, contract_create_body);
}

static cp_status contract_update_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    directory_contract c;
    int64_t id;
    cp_error err;
    cp_status st;

    if (!api_param_id(req, &id))
        return CP_OK;
    cp_error_clear(&err);
    st = directory_contract_get(a->cfg.dir, id, &c, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    if (!api_manages(p, c.reading_id))
        return api_respond_forbidden(req);
    if (!json_is_object(body) || !contract_apply(body, &c))
        return api_respond_error(req, 400, "invalid", "dates are YYYYMMDD, lists of codes");

    st = directory_contract_update(a->cfg.dir, &c, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    api_invalidate(a, c.user_id);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "contract_updated",
                     "contract", c.id, c.requesting_id, c.revoked ? "{\"revoked\":true}" : NULL);
    return api_respond_json(req, 200, contract_json(&c));
}

static cp_status handle_contract_update(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_CONTRACT_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, contract_update_body);
}

/* --- API tokens ------------------------------------------------------------------- */

static json_t *token_json(const directory_api_token *t)
{
    char created[32], expires[32];

    api_format_time(t->created_us, created);
    api_format_time(t->expires_us, expires);
    return json_pack("{s:I, s:s, s:I, s:o, s:s, s:s?, s:b}", "id", (json_int_t)t->id,
                     "name", t->name, "institution_id", (json_int_t)t->institution_id,
                     "roles", api_roles_json(t->roles), "created", created,
                     "expires", t->expires_us ? expires : NULL, "revoked", t->revoked);
}

typedef struct token_list {
    const principal *p;
    json_t *arr;
    int64_t want_id;                    /* > 0: find this one into found */
    directory_api_token found;
} token_list;

static cp_status token_one(void *ctx, const directory_api_token *t)
{
    token_list *l = ctx;

    if (l->want_id) {
        if (t->id == l->want_id)
            l->found = *t;
        return CP_OK;
    }
    if (api_manages(l->p, t->institution_id) &&
        json_array_append_new(l->arr, token_json(t)) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_token_list(http_request *req, void *ctx)
{
    api_service *a = ctx;
    token_list l = { .p = api_principal(req) };
    cp_error err;
    cp_status st;

    if (!policy_allows(l.p, POLICY_TOKEN_MANAGE))
        return api_respond_forbidden(req);
    l.arr = json_array();
    if (!l.arr)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = directory_token_list(a->cfg.dir, token_one, &l, &err);
    if (st != CP_OK) {
        json_decref(l.arr);
        return api_respond_status(req, st, &err);
    }
    return api_respond_json(req, 200, l.arr);
}

static cp_status token_create_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    directory_api_token t = { 0 };
    const char *name, *expires;
    char text[128];
    bool has_inst;
    cp_error err;
    cp_status st;
    json_t *o;

    if (!json_is_object(body) ||
        !api_json_string(body, "name", DIRECTORY_NAME_MAX, true, &name) || !name[0] ||
        !api_json_int(body, "institution_id", 1, INT64_MAX, &t.institution_id, &has_inst) ||
        !has_inst || !api_roles_from_json(json_object_get(body, "roles"), &t.roles) ||
        !api_json_string(body, "expires", 40, false, &expires) ||
        (expires && !api_parse_time(expires, true, &t.expires_us)))
        return api_respond_error(req, 400, "invalid",
                                 "name, institution_id and roles are required; "
                                 "expires is ISO 8601");
    if (t.roles & ROLE_SEPARATED)
        return api_respond_error(req, 400, "roles_conflict",
                                 "a token never holds a separated admin role");
    if (!api_manages(p, t.institution_id))
        return api_respond_forbidden(req);

    snprintf(t.name, sizeof(t.name), "%s", name);
    cp_error_clear(&err);
    st = directory_token_create(a->cfg.dir, &t, text, sizeof(text), &err);
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 400, "invalid", "no such institution");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_CREATE, "token_created", "token",
                     t.id, t.institution_id, NULL);
    o = token_json(&t);
    if (o)
        json_object_set_new(o, "token", json_string(text));
    explicit_bzero(text, sizeof(text));
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 201, o);
}

static cp_status handle_token_create(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_TOKEN_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, token_create_body);
}

static cp_status handle_token_revoke(http_request *req, void *ctx)
{
    api_service *a = ctx;
    token_list l = { .p = api_principal(req) };
    cp_error err;
    cp_status st;

    if (!policy_allows(l.p, POLICY_TOKEN_MANAGE))
        return api_respond_forbidden(req);
    if (!api_param_id(req, &l.want_id))
        return CP_OK;
    cp_error_clear(&err);
    st = directory_token_list(a->cfg.dir, token_one, &l, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    if (!l.found.id)
        return api_respond_error(req, 404, "not_found", "no such token");
    if (!api_manages(l.p, l.found.institution_id))
        return api_respond_forbidden(req);

    st = directory_token_revoke(a->cfg.dir, l.found.id, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    /* Cached token principals go with every other: the token stops now. */
    api_invalidate(a, 0);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_DELETE, "token_revoked", "token",
                     l.found.id, l.found.institution_id, NULL);
    return api_respond_empty(req);
}

/* --- application entities ------------------------------------------------------------ */

static json_t *ae_json(const directory_ae *ae)
{
    return json_pack("{s:s, s:I, s:s, s:i, s:s}", "title", ae->title,
                     "institution_id", (json_int_t)ae->institution_id, "host", ae->host,
                     "port", ae->port, "allow", ae->allow);
}

/* An AE title: 1-16 characters of the default repertoire, no backslash (PS3.5 6.2). */
static bool ae_title_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 16 || s[0] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7E || s[i] == '\\')
            return false;
    }
    return true;
}

/* "store,query,retrieve" or a part of it. */
static bool allow_ok(const char *s)
{
    const char *p = s;

    while (*p) {
        size_t n = strcspn(p, ",");

        if (!((n == 5 && strncmp(p, "store", 5) == 0) ||
              (n == 5 && strncmp(p, "query", 5) == 0) ||
              (n == 8 && strncmp(p, "retrieve", 8) == 0)))
            return false;
        p += n + (p[n] == ',');
    }
    return true;
}

typedef struct ae_list {
    const principal *p;
    json_t *arr;
} ae_list;

static cp_status ae_one(void *ctx, const directory_ae *ae)
{
    ae_list *l = ctx;

    if (api_manages(l->p, ae->institution_id) &&
        json_array_append_new(l->arr, ae_json(ae)) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_ae_list(http_request *req, void *ctx)
{
    api_service *a = ctx;
    ae_list l = { api_principal(req), NULL };
    cp_error err;
    cp_status st;

    if (!policy_allows(l.p, POLICY_AE_MANAGE))
        return api_respond_forbidden(req);
    l.arr = json_array();
    if (!l.arr)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = directory_ae_list(a->cfg.dir, ae_one, &l, &err);
    if (st != CP_OK) {
        json_decref(l.arr);
        return api_respond_status(req, st, &err);
    }
    return api_respond_json(req, 200, l.arr);
}

static void audit_ae(api_service *a, const http_request *req, audit_action action,
                     const char *type, const directory_ae *ae)
{
    audit_record r = { 0 };

    r.event = AUDIT_SECURITY_ALERT;
    r.action = action;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof(r.type), "%s", type);
    snprintf(r.object_kind, sizeof(r.object_kind), "ae");
    snprintf(r.object_id, sizeof(r.object_id), "%s", ae->title);
    r.institution_id = ae->institution_id;
    api_audit(a, req, &r);
}

static cp_status ae_put_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *title = http_request_param(req, "title"), *host, *allow;
    directory_ae ae = { 0 }, old;
    int64_t port = 0;
    bool has_inst, has_port;
    cp_error err;
    cp_status st;

    if (!ae_title_ok(title) || !json_is_object(body) ||
        !api_json_int(body, "institution_id", 1, INT64_MAX, &ae.institution_id, &has_inst) ||
        !has_inst || !api_json_string(body, "host", sizeof(ae.host) - 1, false, &host) ||
        !api_json_int(body, "port", 0, 65535, &port, &has_port) ||
        !api_json_string(body, "allow", sizeof(ae.allow) - 1, false, &allow) ||
        (allow && !allow_ok(allow)))
        return api_respond_error(req, 400, "invalid",
                                 "an AE title of 1-16 characters, institution_id, "
                                 "port 0-65535, allow of store,query,retrieve");
    if (!api_manages(p, ae.institution_id))
        return api_respond_forbidden(req);
    cp_error_clear(&err);
    st = directory_ae_get(a->cfg.dir, title, &old, &err);
    if (st == CP_OK && !api_manages(p, old.institution_id))
        return api_respond_forbidden(req);
    if (st != CP_OK && st != CP_ERR_NOT_FOUND)
        return api_respond_status(req, st, &err);

    snprintf(ae.title, sizeof(ae.title), "%s", title);
    snprintf(ae.host, sizeof(ae.host), "%s", host ? host : "");
    snprintf(ae.allow, sizeof(ae.allow), "%s", allow ? allow : "store,query,retrieve");
    ae.port = (int)port;
    cp_error_clear(&err);
    st = directory_ae_put(a->cfg.dir, &ae, &err);
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 400, "invalid", "no such institution");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    api_invalidate(a, 0);
    audit_ae(a, req, AUDIT_UPDATE, "ae_put", &ae);
    return api_respond_json(req, 200, ae_json(&ae));
}

static cp_status handle_ae_put(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_AE_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, ae_put_body);
}

static cp_status handle_ae_delete(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    const char *title = http_request_param(req, "title");
    directory_ae ae;
    cp_error err;
    cp_status st;

    if (!policy_allows(p, POLICY_AE_MANAGE))
        return api_respond_forbidden(req);
    cp_error_clear(&err);
    st = directory_ae_get(a->cfg.dir, title, &ae, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    if (!api_manages(p, ae.institution_id))
        return api_respond_forbidden(req);
    st = directory_ae_delete(a->cfg.dir, title, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    api_invalidate(a, 0);
    audit_ae(a, req, AUDIT_DELETE, "ae_removed", &ae);
    return api_respond_empty(req);
}

cp_status api_directory_register(api_service *a, http_server *s)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        http_handler_fn fn;
    } routes[] = {
        { HTTP_GET, "/api/institutions", handle_inst_list },
        { HTTP_POST, "/api/institutions", handle_inst_create },
        { HTTP_GET, "/api/institutions/{id}", handle_inst_get },
        { HTTP_PATCH, "/api/institutions/{id}", handle_inst_update },
        { HTTP_GET, "/api/contracts", handle_contract_list },
        { HTTP_POST, "/api/contracts", handle_contract_create },
        { HTTP_PATCH, "/api/contracts/{id}", handle_contract_update },
        { HTTP_GET, "/api/tokens", handle_token_list },
        { HTTP_POST, "/api/tokens", handle_token_create },
        { HTTP_DELETE, "/api/tokens/{id}", handle_token_revoke },
        { HTTP_GET, "/api/aes", handle_ae_list },
        { HTTP_PUT, "/api/aes/{title}", handle_ae_put },
        { HTTP_DELETE, "/api/aes/{title}", handle_ae_delete },
    };
    cp_status st = CP_OK;

    for (size_t i = 0; st == CP_OK && i < sizeof(routes) / sizeof(routes[0]); i++)
        st = http_server_route(s, routes[i].methods, routes[i].pattern, 0, routes[i].fn, a);
    return st;
}
