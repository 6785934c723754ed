/*
 * api_internal.h - what the files of the REST API share (docs/api.md): the
 * service itself, JSON bodies in and out, the error shape
 * {"error", "status", "reason"}, the JSON forms of users and institutions,
 * times as ISO 8601 UTC, and the audit record of a change. Private to
 * src/api; the public contract is api.h.
 */
#ifndef CP_API_API_INTERNAL_H
#define CP_API_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "api/api.h"
#include "core/limits.h"

/* One peer whose rejected token was written to the audit trail lately. */
typedef struct api_fail_entry {
    char peer[64];
    int64_t at_us;
} api_fail_entry;

struct api_service {
    api_config cfg;                     /* audit_source points at audit_source */
    char *audit_source;
    pthread_mutex_t fail_lock;
    api_fail_entry fails[API_AUTH_FAIL_PEERS];
    api_film_render_fn film_render;     /* added: cloud film's pictures */
    void *film_render_ctx;
    struct http_static *film_page;      /* added: web/dist/film.html at /film/ */
    store *film_store;                  /* added: cloud film's instance files */
    api_intake_status_fn intake_status; /* added: GET /api/intake */
    void *intake_status_ctx;
};

#define API_COOKIE_NAME "cloudpacs_session"

/* A handler for a route with a JSON body, called once the body is parsed. */
typedef cp_status (*api_body_fn)(api_service *a, http_request *req, json_t *body);

/* Responds with value as JSON and releases it (NULL: out of memory, 503). */
cp_status api_respond_json(http_request *req, int status, json_t *value);

/* Responds {"error": message, "status": status, "reason": reason}. */
cp_status api_respond_error(http_request *req, int status, const char *reason,
                            const char *message);

/* 403 with reason "forbidden". */
cp_status api_respond_forbidden(http_request *req);

/*
 * Responds the error a failed directory, session or audit call stands for:
 * 404 not_found, 409 exists, 400 invalid, 403 forbidden, 503 unavailable,
 * 500 otherwise; err's detail is the message when there is one.
 */
cp_status api_respond_status(http_request *req, cp_status st, const cp_error *err);

/* 204 without a body. */
cp_status api_respond_empty(http_request *req);

/*
 * Reads the request's JSON body (at most API_BODY_MAX bytes: 413 with
 * reason "too_large" beyond; 400 "bad_json" when it does not parse) and
 * calls fn with it. The body's bytes are wiped once parsed: they may hold
 * a password.
 */
cp_status api_read_json(api_service *a, http_request *req, api_body_fn fn);

/* A decimal id > 0 from text; false when it is not one. */
bool api_parse_id(const char *text, int64_t *out);

/* The path parameter "id" as an id; false (after a 404) when it is not one. */
bool api_param_id(http_request *req, int64_t *out);

/* "2026-12-03T16:20:01Z" for a time in microseconds since 1970 ("" for 0). */
void api_format_time(int64_t us, char out[32]);

/*
 * Parses "2026-12-03T16:20:01Z" (seconds optional, "Z" optional) or
 * "20261203"; a bare date means its first second, or with end_of_day its
 * last microsecond.
 */
bool api_parse_time(const char *text, bool end_of_day, int64_t *us);

/* ["radiologist", ...] for a mask of role bits. */
json_t *api_roles_json(unsigned roles);

/* A mask from a JSON array of role names; false for anything else. */
bool api_roles_from_json(const json_t *value, unsigned *roles);

json_t *api_user_json(const directory_user *u);
json_t *api_institution_json(const directory_institution *inst);

/*
 * Optional string member of obj: false when present and not a string of at
 * most max bytes (or, with required, absent). *out is NULL when absent.
 */
bool api_json_string(const json_t *obj, const char *key, size_t max, bool required,
                     const char **out);

/* Optional integer member within [min, max]; *present says whether it was there. */
bool api_json_int(const json_t *obj, const char *key, int64_t min, int64_t max,
                  int64_t *out, bool *present);

/* Optional boolean member. */
bool api_json_bool(const json_t *obj, const char *key, bool *out, bool *present);

/*
 * Whether the principal manages institution_id; 0 (the roots) is the
 * business of the system admin and the service only.
 */
bool api_manages(const principal *p, int64_t institution_id);

/*
 * The token the request authenticates with: the bearer token, else the
 * session cookie (*from_cookie then true), copied into out; false if none
 * (or longer than cap allows: SESSION_TOKEN_MAX + 1 holds every token).
 */
bool api_request_token(const http_request *req, char *out, size_t cap, bool *from_cookie);

/*
 * Writes the audit record of a change made by the request's principal.
 * detail is a JSON object as text or NULL.
 */
void api_audit_change(api_service *a, const http_request *req, audit_event event,
                      audit_action action, const char *type, const char *object_kind,
                      int64_t object_id, int64_t institution_id, const char *detail);

/* Drops cached principals after a change (0: every user's); failures are logged. */
void api_invalidate(api_service *a, int64_t user_id);

#endif
