/*
 * api_users.c - the users of the directory under /api/users (docs/api.md):
 * accounts, roles, password resets, lockouts, sessions and radiologists'
 * qualifications. Each route asks the policy (auth/policy.h) before it
 * acts, drops the cached principal of the user it changed, and writes the
 * change to the audit trail as a Security Alert (PS3.15 A.5.3.10).
 *
 * Who sees which users: the service, the system admin and the security
 * admin see all (the last for unlocking and roles); an institution admin
 * sees its subtree; everyone else only themselves (/api/me). A user who
 * holds one of the three separated admin roles is changed (PATCH, password
 * reset, qualifications) only by the service principal, so that no admin
 * can take over another one's account; roles stay the security admin's.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/api_users.h"
#include "auth/credential.h"
#include "core/alloc.h"

/* --- who may see and change whom ------------------------------------------------ */

static bool sees_every_user(const principal *p)
{
    return p->kind == PRINCIPAL_SERVICE ||
           (p->roles & (ROLE_SYSTEM_ADMIN | ROLE_SECURITY_ADMIN)) != 0;
}

static bool lists_users(const principal *p)
{
    return policy_allows(p, POLICY_USER_MANAGE) || policy_allows(p, POLICY_ROLE_GRANT) ||
           policy_allows(p, POLICY_ADMIN_ROLE_GRANT) || policy_allows(p, POLICY_ACCOUNT_UNLOCK);
}

static bool user_visible(const principal *p, const directory_user *u)
{
    if (p->kind == PRINCIPAL_USER && p->id == u->id)
        return true;
    if (!lists_users(p))
        return false;
    return sees_every_user(p) || policy_manages_institution(p, u->institution_id);
}

static bool manages_user(const principal *p, const directory_user *u)
{
    if (u->roles & ROLE_SEPARATED)
        return p->kind == PRINCIPAL_SERVICE;
    return api_manages(p, u->institution_id);
}

/*
 * Loads the user of the path's {id}. Answers 404 (no such user) itself and
 * returns false then.
 */
static bool load_user(api_service *a, http_request *req, directory_user *u)
{
    int64_t id;
    cp_error err;
    cp_status st;

    if (!api_param_id(req, &id))
        return false;
    cp_error_clear(&err);
    st = directory_user_get(a->cfg.dir, id, u, &err);
    if (st != CP_OK) {
        api_respond_status(req, st, &err);
        return false;
    }
    return true;
}

/* --- listing and reading ------------------------------------------------------- */

typedef struct list_ctx {
    const principal *p;
    json_t *arr;
} list_ctx;

static cp_status list_one(void *ctx, const directory_user *u)
{
    list_ctx *l = ctx;

    if (user_visible(l->p, u) && json_array_append_new(l->arr, api_user_json(u)) != 0)
        return CP_ERR_NOMEM;
    return CP_OK;
}

static cp_status handle_list(http_request *req, void *ctx)
{
    api_service *a = ctx;
    list_ctx l = { api_principal(req), NULL };
    const char *inst = http_request_query(req, "institution");
    int64_t inst_id = 0;
    cp_error err;
    cp_status st;

    if (!lists_users(l.p))
        return api_respond_forbidden(req);
    if (inst && !api_parse_id(inst, &inst_id))
        return api_respond_error(req, 400, "invalid", "institution must be an id");

    l.arr = json_array();
    if (!l.arr)
        return api_respond_json(req, 503, NULL);
    cp_error_clear(&err);
    st = directory_user_list(a->cfg.dir, inst ? &inst_id : NULL, inst ? 1 : 0, list_one, &l,
                             &err);
    if (st != CP_OK) {
        json_decref(l.arr);
        return api_respond_status(req, st, &err);
    }
    return api_respond_json(req, 200, l.arr);
}

static cp_status handle_get(http_request *req, void *ctx)
{
    directory_user u;

    if (!load_user(ctx, req, &u))
        return CP_OK;
    if (!user_visible(api_principal(req), &u))
        return api_respond_forbidden(req);
    return api_respond_json(req, 200, api_user_json(&u));
}

/* --- creating and updating --------------------------------------------------------- */

static cp_status create_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *username, *display, *password;
    char hash[CREDENTIAL_HASH_SIZE], roles_text[96], detail[160];
    directory_user u = { 0 };
    int64_t inst = 0, title = 0;
    bool has_inst, has_title, has_self = false, self_ok = false;
    unsigned roles = 0;
    cp_error err;
    cp_status st;

    if (!json_is_object(body) ||
        !api_json_string(body, "username", DIRECTORY_USERNAME_MAX, true, &username) ||
        !api_json_string(body, "display_name", DIRECTORY_NAME_MAX, false, &display) ||
        !api_json_string(body, "password", CREDENTIAL_PASSWORD_MAX, true, &password) ||
        !api_json_int(body, "institution_id", 1, INT64_MAX, &inst, &has_inst) || !has_inst ||
        !api_json_int(body, "title", 0, 4, &title, &has_title) ||
        !api_json_bool(body, "may_self_approve", &self_ok, &has_self) ||
        (json_object_get(body, "roles") &&
         !api_roles_from_json(json_object_get(body, "roles"), &roles)))
        return api_respond_error(req, 400, "invalid",
                                 "username, password and institution_id are required; "
                                 "roles are role names, title 0-4");
    if (!api_manages(p, inst) || !policy_allows(p, POLICY_USER_MANAGE) ||
        (roles && !policy_may_grant(p, roles, 0)))
        return api_respond_forbidden(req);

    cp_error_clear(&err);
    st = credential_password_hash(password, hash, sizeof(hash), &err);
    if (st == CP_ERR_INVALID)
        return api_respond_error(req, 400, "weak_password", err.detail);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    snprintf(u.username, sizeof(u.username), "%s", username);
    snprintf(u.display_name, sizeof(u.display_name), "%s", display ? display : username);
    u.institution_id = inst;
    u.roles = roles;
    u.title = (int)title;
    u.may_self_approve = self_ok;
    st = directory_user_create(a->cfg.dir, &u, hash, &err);
    explicit_bzero(hash, sizeof(hash));
    if (st == CP_ERR_FORBIDDEN)
        return api_respond_error(req, 400, "roles_conflict", err.detail);
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 400, "invalid", "no such institution");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    if (directory_roles_format(roles, roles_text, sizeof(roles_text)) != CP_OK)
        roles_text[0] = '\0';
    snprintf(detail, sizeof(detail), "{\"roles\":\"%s\"}", roles_text);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_CREATE, "user_created", "user", u.id,
                     u.institution_id, detail);
    return api_respond_json(req, 201, api_user_json(&u));
}

static cp_status handle_create(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_USER_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, create_body);
}

static cp_status update_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *display;
    directory_user u;
    int64_t inst = 0, title = 0;
    bool has_inst, has_title, has_self, has_dis, self_ok = false, dis = false, was_disabled;
    cp_error err;
    cp_status st;

    if (!load_user(a, req, &u))
        return CP_OK;
    if (!manages_user(p, &u))
        return api_respond_forbidden(req);
    if (!json_is_object(body) ||
        !api_json_string(body, "display_name", DIRECTORY_NAME_MAX, false, &display) ||
        !api_json_int(body, "institution_id", 1, INT64_MAX, &inst, &has_inst) ||
        !api_json_int(body, "title", 0, 4, &title, &has_title) ||
        !api_json_bool(body, "may_self_approve", &self_ok, &has_self) ||
        !api_json_bool(body, "disabled", &dis, &has_dis))
        return api_respond_error(req, 400, "invalid", "a field has the wrong type");
    if (has_inst && inst != u.institution_id && !api_manages(p, inst))
        return api_respond_forbidden(req);

    was_disabled = u.disabled;
    if (display)
        snprintf(u.display_name, sizeof(u.display_name), "%s", display);
    if (has_inst)
        u.institution_id = inst;
    if (has_title)
        u.title = (int)title;
    if (has_self)
        u.may_self_approve = self_ok;
    if (has_dis)
        u.disabled = dis;
    cp_error_clear(&err);
    st = directory_user_update(a->cfg.dir, &u, &err);
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 400, "invalid", "no such institution");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    api_invalidate(a, u.id);
    if (u.disabled && !was_disabled)
        st = session_end_user(a->cfg.sessions, u.id, NULL);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "user_updated", "user", u.id,
                     u.institution_id, has_dis ? (dis ? "{\"disabled\":true}"
                                                      : "{\"disabled\":false}") : NULL);
    if (st != CP_OK)
        return api_respond_status(req, st, NULL);
    return api_respond_json(req, 200, api_user_json(&u));
}

static cp_status handle_update(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_USER_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, update_body);
}

/* --- roles ------------------------------------------------------------------------ */

static cp_status roles_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    char from[96], to[96], detail[256];
    directory_user u;
    unsigned roles, changed;
    cp_error err;
    cp_status st;

    if (!load_user(a, req, &u))
        return CP_OK;
    if (!json_is_object(body) || !api_roles_from_json(json_object_get(body, "roles"), &roles))
        return api_respond_error(req, 400, "invalid", "roles must be a list of role names");

    /* Taking a role away needs the same right as giving it. */
    changed = roles ^ u.roles;
    if (!user_visible(p, &u) || !policy_may_grant(p, changed ? changed : roles, u.id))
        return api_respond_forbidden(req);

    cp_error_clear(&err);
    st = directory_user_set_roles(a->cfg.dir, u.id, roles, &err);
    if (st == CP_ERR_FORBIDDEN)
        return api_respond_error(req, 400, "roles_conflict", err.detail);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    api_invalidate(a, u.id);
    if (directory_roles_format(u.roles, from, sizeof(from)) != CP_OK)
        from[0] = '\0';
    if (directory_roles_format(roles, to, sizeof(to)) != CP_OK)
        to[0] = '\0';
    snprintf(detail, sizeof(detail), "{\"from\":\"%s\",\"to\":\"%s\"}", from, to);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "roles_changed", "user", u.id,
                     u.institution_id, detail);
    u.roles = roles;
    return api_respond_json(req, 200, api_user_json(&u));
}

static cp_status handle_roles(http_request *req, void *ctx)
{
    const principal *p = api_principal(req);

    if (!policy_allows(p, POLICY_ROLE_GRANT) && !policy_allows(p, POLICY_ADMIN_ROLE_GRANT))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, roles_body);
}

/* --- passwords, lockouts and sessions ------------------------------------------------ */

static cp_status reset_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *password;
    char hash[CREDENTIAL_HASH_SIZE];
    directory_user u;
    cp_error err;
    cp_status st;

    if (!load_user(a, req, &u))
        return CP_OK;
    if (!manages_user(p, &u))
        return api_respond_forbidden(req);
    if (!json_is_object(body) ||
        !api_json_string(body, "password", CREDENTIAL_PASSWORD_MAX, true, &password))
        return api_respond_error(req, 400, "invalid", "password (a string) is required");

    cp_error_clear(&err);
    st = credential_password_hash(password, hash, sizeof(hash), &err);
    if (st == CP_ERR_INVALID)
        return api_respond_error(req, 400, "weak_password", err.detail);
    if (st == CP_OK)
        st = directory_user_set_password(a->cfg.dir, u.id, hash, &err);
    explicit_bzero(hash, sizeof(hash));
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    st = session_end_user(a->cfg.sessions, u.id, NULL);
    api_invalidate(a, u.id);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "password_reset", "user", u.id,
                     u.institution_id, NULL);
    if (st != CP_OK)
        return api_respond_status(req, st, NULL);
    return api_respond_empty(req);
}

static cp_status handle_reset(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_USER_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, reset_body);
}

static cp_status handle_unlock(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    directory_user u;
    cp_status st;

    if (!policy_allows(p, POLICY_ACCOUNT_UNLOCK))
        return api_respond_forbidden(req);
    if (!load_user(a, req, &u))
        return CP_OK;
    if (!user_visible(p, &u))
        return api_respond_forbidden(req);

    st = session_unlock(a->cfg.sessions, u.username, NULL);
    if (st != CP_OK)
        return api_respond_status(req, st, NULL);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "account_unlocked", "user",
                     u.id, u.institution_id, NULL);
    return api_respond_empty(req);
}

static cp_status handle_end_sessions(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    directory_user u;
    cp_status st;

    if (!policy_allows(p, POLICY_ACCOUNT_UNLOCK))
        return api_respond_forbidden(req);
    if (!load_user(a, req, &u))
        return CP_OK;
    if (!user_visible(p, &u))
        return api_respond_forbidden(req);

    st = session_end_user(a->cfg.sessions, u.id, NULL);
    if (st != CP_OK)
        return api_respond_status(req, st, NULL);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_DELETE, "sessions_ended", "user",
                     u.id, u.institution_id, NULL);
    return api_respond_empty(req);
}

/* --- qualifications ------------------------------------------------------------------- */

static json_t *qualifications_json(const directory_qualification *q, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, json_pack("{s:s, s:s}", "modality", q[i].modality,
                                                 "body_part", q[i].body_part)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static cp_status handle_quals_get(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    directory_qualification *q = NULL;
    directory_user u;
    size_t n = 0;
    cp_error err;
    cp_status st;

    if (!load_user(a, req, &u))
        return CP_OK;
    if (!(p->kind == PRINCIPAL_USER && p->id == u.id) &&
        !(policy_allows(p, POLICY_QUALIFICATION_MANAGE) && manages_user(p, &u)))
        return api_respond_forbidden(req);

    cp_error_clear(&err);
    st = directory_qualifications_get(a->cfg.dir, u.id, &q, &n, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    st = api_respond_json(req, 200, qualifications_json(q, n));
    cp_free(q);
    return st;
}

/* A modality or body part: 1-16 of [A-Za-z0-9_], or "*". */
static bool code_ok(const char *s)
{
    size_t n = strlen(s);

    if (strcmp(s, "*") == 0)
        return true;
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    }
    return true;
}

static bool parse_qualifications(const json_t *body, directory_qualification *q, size_t *n)
{
    size_t i;
    const json_t *v;

    if (!json_is_array(body) || json_array_size(body) > API_QUALIFICATIONS_MAX)
        return false;
    json_array_foreach(body, i, v) {
        const char *m, *b;

        if (!json_is_object(v) || !api_json_string(v, "modality", 16, true, &m) ||
            !api_json_string(v, "body_part", 16, true, &b) || !code_ok(m) || !code_ok(b))
            return false;
        snprintf(q[i].modality, sizeof(q[i].modality), "%s", m);
        snprintf(q[i].body_part, sizeof(q[i].body_part), "%s", b);
    }
    *n = json_array_size(body);
    return true;
}

static cp_status quals_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    directory_qualification *q;
    directory_user u;
    size_t n = 0;
    cp_error err;
    cp_status st;

    if (!load_user(a, req, &u))
        return CP_OK;
    if (!manages_user(p, &u))
        return api_respond_forbidden(req);
    q = cp_calloc(API_QUALIFICATIONS_MAX, sizeof(*q));
    if (!q)
        return api_respond_json(req, 503, NULL);
    if (!parse_qualifications(body, q, &n)) {
        cp_free(q);
        return api_respond_error(req, 400, "invalid",
                                 "a list of at most 256 {\"modality\", \"body_part\"}");
    }

    cp_error_clear(&err);
    st = directory_qualifications_set(a->cfg.dir, u.id, q, n, &err);
    if (st == CP_OK) {
        api_invalidate(a, u.id);
        api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "qualifications_changed",
                         "user", u.id, u.institution_id, NULL);
        st = api_respond_json(req, 200, qualifications_json(q, n));
    } else {
        st = api_respond_status(req, st, &err);
    }
    cp_free(q);
    return st;
}

static cp_status handle_quals_put(http_request *req, void *ctx)
{
    if (!policy_allows(api_principal(req), POLICY_QUALIFICATION_MANAGE))
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, quals_body);
}

cp_status api_users_register(api_service *a, http_server *s)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        http_handler_fn fn;
    } routes[] = {
        { HTTP_GET, "/api/users", handle_list },
        { HTTP_POST, "/api/users", handle_create },
        { HTTP_GET, "/api/users/{id}", handle_get },
        { HTTP_PATCH, "/api/users/{id}", handle_update },
        { HTTP_PUT, "/api/users/{id}/roles", handle_roles },
        { HTTP_POST, "/api/users/{id}/password", handle_reset },
        { HTTP_POST, "/api/users/{id}/unlock", handle_unlock },
        { HTTP_DELETE, "/api/users/{id}/sessions", handle_end_sessions },
        { HTTP_GET, "/api/users/{id}/qualifications", handle_quals_get },
        { HTTP_PUT, "/api/users/{id}/qualifications", handle_quals_put },
    };
    cp_status st = CP_OK;

    for (size_t i = 0; st == CP_OK && i < sizeof(routes) / sizeof(routes[0]); i++)
        st = http_server_route(s, routes[i].methods, routes[i].pattern, 0, routes[i].fn, a);
    return st;
}
