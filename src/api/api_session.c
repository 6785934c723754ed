/*
 * api_session.c - signing in and out (POST and DELETE /api/session) and
 * the caller's own account (/api/me): who it is and what it may do, its
 * password, and the enrolment of its second factor (TOTP, RFC 6238). The
 * session cookie follows RFC 6265 (HttpOnly, SameSite=Strict, Secure over
 * HTTPS); every login, failed or not, and every logout is written to the
 * audit trail as a User Authentication event (PS3.15 A.5.3.11).
 */
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"
#include "api/api_session.h"
#include "auth/credential.h"

/* --- signing in ---------------------------------------------------------------- */

static const char *login_reason(session_login_result r)
{
    switch (r) {
    case SESSION_LOGIN_OK:
        return "ok";
    case SESSION_LOGIN_BAD_CREDENTIALS:
        return "bad_credentials";
    case SESSION_LOGIN_LOCKED:
        return "locked";
    case SESSION_LOGIN_DISABLED:
        return "disabled";
    case SESSION_LOGIN_MFA_REQUIRED:
        return "mfa_required";
    case SESSION_LOGIN_MFA_BAD:
        return "mfa_bad";
    }
    return "unknown";
}

/* The record of a login attempt: the username as actor, never the password. */
static void audit_login(api_service *a, http_request *req, const char *username,
                        const session_login_outcome *out)
{
    audit_record r = { 0 };

    r.event = AUDIT_USER_AUTHENTICATION;
    r.action = AUDIT_EXECUTE;
    r.outcome = out->result == SESSION_LOGIN_OK ? AUDIT_SUCCESS : AUDIT_MINOR_FAILURE;
    snprintf(r.type, sizeof(r.type), "login");
    r.user_id = out->user_id;
    snprintf(r.actor, sizeof(r.actor), "%s", username);
    snprintf(r.object_kind, sizeof(r.object_kind), "user");
    if (out->user_id)
        snprintf(r.object_id, sizeof(r.object_id), "%lld", (long long)out->user_id);
    snprintf(r.detail, sizeof(r.detail), "{\"result\":\"%s\"}", login_reason(out->result));
    api_audit(a, req, &r);
}

static cp_status login_ok(api_service *a, http_request *req, const session_login_outcome *out)
{
    directory_user u;
    char cookie[160], expires[32];
    cp_error err;
    cp_status st;
    json_t *o;

    cp_error_clear(&err);
    st = directory_user_get(a->cfg.dir, out->user_id, &u, &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    api_format_time(out->expires_us, expires);
    o = json_pack("{s:s, s:s, s:o, s:b}", "token", out->token, "expires", expires,
                  "user", api_user_json(&u), "enrol_required", out->enrol_only);
    snprintf(cookie, sizeof(cookie), "%s=%s; Path=/; HttpOnly; SameSite=Strict%s",
             API_COOKIE_NAME, out->token, a->cfg.secure_cookies ? "; Secure" : "");
    st = http_response_header(req, "Set-Cookie", cookie);
    explicit_bzero(cookie, sizeof(cookie));
    if (st == CP_OK)
        st = http_response_header(req, "Cache-Control", "no-store");
    if (st != CP_OK) {
        json_decref(o);
        return api_respond_status(req, st, NULL);
    }
    return api_respond_json(req, 200, o);
}

static cp_status login_body(api_service *a, http_request *req, json_t *body)
{
    const char *username, *password, *totp, *peer = http_request_peer(req);
    session_login_outcome out = { 0 };
    char retry[24];
    cp_error err;
    cp_status st;

    if (!json_is_object(body) ||
        !api_json_string(body, "username", DIRECTORY_USERNAME_MAX, true, &username) ||
        !api_json_string(body, "password", CREDENTIAL_PASSWORD_MAX, true, &password) ||
        !api_json_string(body, "totp", 16, false, &totp))
        return api_respond_error(req, 400, "invalid",
                                 "username and password (strings) are required");

    cp_error_clear(&err);
    st = session_login(a->cfg.sessions, username, password, totp, peer ? peer : "", &out,
                       &err);
    if (st != CP_OK)
        return api_respond_status(req, st, NULL);
    audit_login(a, req, username, &out);

    switch (out.result) {
    case SESSION_LOGIN_OK:
        st = login_ok(a, req, &out);
        explicit_bzero(out.token, sizeof(out.token));
        return st;
    case SESSION_LOGIN_LOCKED:
        snprintf(retry, sizeof(retry), "%u", out.retry_after_s ? out.retry_after_s : 1);
        http_response_header(req, "Retry-After", retry);
        return api_respond_error(req, 423, "locked", "too many failed logins; try later");
    case SESSION_LOGIN_DISABLED:
        return api_respond_error(req, 403, "disabled", "the account is disabled");
    case SESSION_LOGIN_MFA_REQUIRED:
        http_response_header(req, "WWW-Authenticate", "Bearer realm=\"cloudpacs\"");
        return api_respond_error(req, 401, "mfa_required", "a one-time code is required");
    case SESSION_LOGIN_MFA_BAD:
        http_response_header(req, "WWW-Authenticate", "Bearer realm=\"cloudpacs\"");
        return api_respond_error(req, 401, "mfa_bad", "the one-time code is wrong");
    case SESSION_LOGIN_BAD_CREDENTIALS:
        break;
    }
    http_response_header(req, "WWW-Authenticate", "Bearer realm=\"cloudpacs\"");
    return api_respond_error(req, 401, "bad_credentials", "wrong username or password");
}

static cp_status handle_login(http_request *req, void *ctx)
{
    return api_read_json(ctx, req, login_body);
}

/* --- signing out ----------------------------------------------------------------- */

static cp_status handle_logout(http_request *req, void *ctx)
{
    api_service *a = ctx;
    char token[SESSION_TOKEN_MAX + 1], cookie[128];
    bool from_cookie;
    audit_record r = { 0 };
    cp_status st;

    if (api_request_token(req, token, sizeof(token), &from_cookie)) {
        st = session_logout(a->cfg.sessions, token, NULL);
        explicit_bzero(token, sizeof(token));
        if (st != CP_OK)
            return api_respond_status(req, st, NULL);
    }

    r.event = AUDIT_USER_AUTHENTICATION;
    r.action = AUDIT_EXECUTE;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof(r.type), "logout");
    api_audit(a, req, &r);

    snprintf(cookie, sizeof(cookie), "%s=; Path=/; HttpOnly; SameSite=Strict%s; Max-Age=0",
             API_COOKIE_NAME, a->cfg.secure_cookies ? "; Secure" : "");
    http_response_header(req, "Set-Cookie", cookie);
    return api_respond_empty(req);
}

/* --- /api/me ------------------------------------------------------------------------ */

static const char *kind_name(principal_kind k)
{
    switch (k) {
    case PRINCIPAL_USER:
        return "user";
    case PRINCIPAL_TOKEN:
        return "token";
    case PRINCIPAL_AE:
        return "ae";
    case PRINCIPAL_SERVICE:
        return "service";
    }
    return "unknown";
}

/* What a principal that is not a user looks like in the place of a user. */
static json_t *principal_json(const principal *p)
{
    return json_pack("{s:I, s:s, s:I, s:o}", "id", (json_int_t)p->id, "username", p->name,
                     "institution_id", (json_int_t)p->institution_id,
                     "roles", api_roles_json(p->roles));
}

static cp_status handle_me(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    directory_institution inst;
    directory_user u;
    json_t *o, *perms;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    if (p->kind == PRINCIPAL_USER) {
        st = directory_user_get(a->cfg.dir, p->id, &u, &err);
        if (st != CP_OK)
            return api_respond_status(req, st, &err);
        o = api_user_json(&u);
    } else {
        o = principal_json(p);
    }
    perms = json_array();
    if (!o || !perms) {
        json_decref(o);
        json_decref(perms);
        return api_respond_json(req, 503, NULL);
    }
    for (int act = POLICY_STUDY_READ; act <= POLICY_METRICS_READ; act++) {
        if (policy_allows(p, (policy_action)act) && policy_action_name((policy_action)act))
            json_array_append_new(perms, json_string(policy_action_name((policy_action)act)));
    }
    json_object_set_new(o, "permissions", perms);
    json_object_set_new(o, "kind", json_string(kind_name(p->kind)));
    json_object_set_new(o, "enrol_required", json_boolean(p->enrol_only));

    if (p->institution_id > 0 &&
        directory_institution_get(a->cfg.dir, p->institution_id, &inst, NULL) == CP_OK)
        json_object_set_new(o, "institution", api_institution_json(&inst));
    else
        json_object_set_new(o, "institution", json_null());
    return api_respond_json(req, 200, o);
}

static cp_status password_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *old_pw, *new_pw;
    char hash[CREDENTIAL_HASH_SIZE];
    bool ok;
    cp_error err;
    cp_status st;

    if (!json_is_object(body) ||
        !api_json_string(body, "old", CREDENTIAL_PASSWORD_MAX, true, &old_pw) ||
        !api_json_string(body, "new", CREDENTIAL_PASSWORD_MAX, true, &new_pw))
        return api_respond_error(req, 400, "invalid", "old and new (strings) are required");

    cp_error_clear(&err);
    st = directory_user_password(a->cfg.dir, p->id, hash, sizeof(hash), &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    ok = credential_password_verify(hash, old_pw);
    if (!ok)
        return api_respond_error(req, 403, "bad_credentials", "the old password is wrong");

    st = credential_password_hash(new_pw, hash, sizeof(hash), &err);
    if (st == CP_ERR_INVALID)
        return api_respond_error(req, 400, "weak_password", err.detail);
    if (st == CP_OK)
        st = directory_user_set_password(a->cfg.dir, p->id, hash, &err);
    explicit_bzero(hash, sizeof(hash));
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    api_invalidate(a, p->id);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "password_changed", "user",
                     p->id, p->institution_id, NULL);
    return api_respond_empty(req);
}

static cp_status handle_password(http_request *req, void *ctx)
{
    if (api_principal(req)->kind != PRINCIPAL_USER)
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, password_body);
}

static cp_status handle_totp_begin(http_request *req, void *ctx)
{
    api_service *a = ctx;
    const principal *p = api_principal(req);
    char secret[DIRECTORY_SECRET_MAX + 1], uri[512];
    cp_error err;
    cp_status st;
    json_t *o;

    if (p->kind != PRINCIPAL_USER)
        return api_respond_forbidden(req);
    cp_error_clear(&err);
    st = session_totp_begin(a->cfg.sessions, p, secret, sizeof(secret), uri, sizeof(uri),
                            &err);
    if (st != CP_OK)
        return api_respond_status(req, st, &err);
    o = json_pack("{s:s, s:s}", "secret", secret, "uri", uri);
    explicit_bzero(secret, sizeof(secret));
    explicit_bzero(uri, sizeof(uri));
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, o);
}

static cp_status totp_confirm_body(api_service *a, http_request *req, json_t *body)
{
    const principal *p = api_principal(req);
    const char *code;
    char token[SESSION_TOKEN_MAX + 1];
    bool from_cookie;
    cp_error err;
    cp_status st;

    if (!json_is_object(body) || !api_json_string(body, "code", 16, true, &code))
        return api_respond_error(req, 400, "invalid", "code (a string) is required");
    if (!api_request_token(req, token, sizeof(token), &from_cookie))
        return api_respond_forbidden(req);

    cp_error_clear(&err);
    st = session_totp_confirm(a->cfg.sessions, p, token, code, &err);
    explicit_bzero(token, sizeof(token));
    if (st == CP_ERR_INVALID || st == CP_ERR_UNAUTHENTICATED || st == CP_ERR_FORBIDDEN)
        return api_respond_error(req, 400, "bad_code", "the code does not match");
    if (st == CP_ERR_NOT_FOUND)
        return api_respond_error(req, 400, "no_enrolment",
                                 "no enrolment pending (POST /api/me/totp first)");
    if (st != CP_OK)
        return api_respond_status(req, st, &err);

    api_invalidate(a, p->id);
    api_audit_change(a, req, AUDIT_SECURITY_ALERT, AUDIT_UPDATE, "totp_enrolled", "user",
                     p->id, p->institution_id, NULL);
    return api_respond_empty(req);
}

static cp_status handle_totp_confirm(http_request *req, void *ctx)
{
    if (api_principal(req)->kind != PRINCIPAL_USER)
        return api_respond_forbidden(req);
    return api_read_json(ctx, req, totp_confirm_body);
}

cp_status api_session_register(api_service *a, http_server *s)
{
    cp_status st;

    st = http_server_route(s, HTTP_POST, "/api/session", HTTP_ROUTE_PUBLIC, handle_login, a);
    if (st == CP_OK)
        st = http_server_route(s, HTTP_DELETE, "/api/session", 0, handle_logout, a);
    if (st == CP_OK)
        st = http_server_route(s, HTTP_GET, "/api/me", 0, handle_me, a);
    if (st == CP_OK)
        st = http_server_route(s, HTTP_POST, "/api/me/password", 0, handle_password, a);
    if (st == CP_OK)
        st = http_server_route(s, HTTP_POST, "/api/me/totp", 0, handle_totp_begin, a);
    if (st == CP_OK)
        st = http_server_route(s, HTTP_POST, "/api/me/totp/confirm", 0, handle_totp_confirm,
                               a);
    return st;
}
