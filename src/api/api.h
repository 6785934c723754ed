/*
 * api.h - the JSON REST API of cloudpacs (docs/api.md) and the
 * authentication hook of the whole web service.
 *
 * api_authenticate is the http_auth_fn every non-public route goes
 * through (DICOMweb, the viewer's data, /metrics and /api alike): it takes
 * the bearer token or the session cookie, resolves it to a principal
 * (session.h), attaches it to the request, and answers 401 (unknown), 403
 * (a cookie-authenticated change without the X-Requested-With guard, or a
 * session that must first enrol a second factor), or 503 (Redis away).
 * Handlers then ask api_principal() and the policy.
 */
#ifndef CP_API_API_H
#define CP_API_API_H

#include <stdbool.h>

#include "auth/audit.h"
#include "auth/directory.h"
#include "auth/policy.h"
#include "auth/session.h"
#include "archive/archive.h"
#include "consult/dispatch.h"
#include "consult/events.h"
#include "consult/order.h"
#include "consult/report.h"
#include "film/share.h"
#include "core/config.h"
#include "core/status.h"
#include "http/http.h"
#include "index/index.h"
#include "kv/kv.h"

typedef struct api_service api_service;

typedef struct api_config {
    directory *dir;                     /* none owned */
    session_service *sessions;
    audit_log *audit;
    index_db *idx;                      /* for /api/health */
    kv *kv;                             /* for /api/health */
    const char *audit_source;           /* AuditSourceID: the AE title or host name */
    bool secure_cookies;                /* HTTPS: cookies get Secure */
    /*
     * Added for remote reading (api_orders.c, api_reports.c; none owned):
     * without dispatch and orders, /api/orders and what hangs from it
     * answer 503; without reports, the report routes do.
     */
    dispatch *disp;
    order_store *orders;
    report_store *reports;
    events_hub *events;                 /* GET /api/events; NULL: 503 */
    archive *arc;                       /* where the released report's SR is stored */
    const char *db_path;                /* the index database, for /api/stats */
    /*
     * Added for cloud film (api_film.c; none owned): without film, a
     * release makes no report PDF and /film/api answers 503.
     */
    film_share_store *film;
    const char *film_dir;               /* where the report PDFs are kept */
    const char *film_base_url;          /* the QR code's URL base; NULL or "": the request's */
    int film_link_days;                 /* a released report's link; 0: 365 */
    /*
     * Added for the phone factor (not owned; alive as long as the API): the
     * configuration whose [film] factor and [film.<INSTITUTION_CODE>] factor
     * ("birth_date" or "phone_last4", checked by serve at start) say which
     * second factor a released report's link asks; NULL: the birth date.
     */
    const cp_config *film_factors;
} api_config;

cp_status api_create(const api_config *cfg, api_service **out, cp_error *err);
void api_destroy(api_service *a);

/* Registers every /api/ route on the server (before http_server_start). */
cp_status api_register(api_service *a, http_server *s, cp_error *err);

/* The http_auth_fn for http_config.auth, with the api_service as ctx. */
http_auth_decision api_authenticate(http_request *req, void *ctx);

/* The principal api_authenticate attached, or NULL (public routes). */
const principal *api_principal(const http_request *req);

/*
 * Writes an audit record for a request: fills the actor, roles, actor
 * institution, peer and session from the request's principal, then queues
 * it. Failures to queue are logged, not returned: the request goes on.
 */
void api_audit(api_service *a, const http_request *req, audit_record *r);

/*
 * Added for cloud film: answers a rendered picture (thumbnail: a small
 * one) of the instance stored under blob_key (hash: its content hash) for
 * GET /film/api/{token}/instances/{sop}/rendered, once the share session
 * and the study are checked. Set by whoever holds the rendering pipeline
 * (DICOMweb), before the server starts; without it those routes answer 503.
 */
typedef cp_status (*api_film_render_fn)(void *ctx, http_request *req, const char *blob_key,
                                        const uint8_t *hash, bool thumbnail);
void api_set_film_render(api_service *a, api_film_render_fn fn, void *ctx);

/*
 * Added for cloud film's instance files (GET /film/api/{token}/instances/
 * {sop}/file, api_film_file.h): the store the instances are read from (the
 * filesystem store: the de-identifier reads a blob as a file). Set before
 * the server starts; without it that route answers 503.
 */
void api_set_film_store(api_service *a, store *st);

/*
 * Added for the intake and export status (GET /api/intake): fills *out
 * with the status JSON (ingest/ingest.h ingest_status_json; the caller
 * owns it), or returns CP_ERR_UNAVAILABLE with a reason when the service
 * does not run. Set by whoever runs that service, before the server
 * starts; without it the route answers 503.
 */
struct json_t;   /* jansson's json_t, not included: its names clash with DICOMweb's */
typedef cp_status (*api_intake_status_fn)(void *ctx, struct json_t **out, cp_error *err);
void api_set_intake_status(api_service *a, api_intake_status_fn fn, void *ctx);

#endif
